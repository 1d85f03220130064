package config

import (
	"net/netip"
	"strings"
)

// The checks below are the ones config applies to its own fields,
// exported so that the middleware kinds check their settings the same
// way.

// IsToken reports whether s is an HTTP token (RFC 9110): a method or a
// header name.
func IsToken(s string) bool { return isToken(s) }

// IsControl reports whether r is an ASCII control character.
func IsControl(r rune) bool { return isControl(r) }

// IsSpaceOrControl reports whether r is a space or an ASCII control
// character.
func IsSpaceOrControl(r rune) bool { return isSpaceOrControl(r) }

// ValidIP reports whether s is an IP address without a zone.
func ValidIP(s string) bool { return validIP(s) }

// ValidIPOrPrefix reports whether s is an IP address or a CIDR prefix,
// without a zone.
func ValidIPOrPrefix(s string) bool {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return err == nil && p.Addr().Zone() == ""
	}
	return validIP(s)
}

// ValidHostname reports whether h is a host name: dot-separated labels
// of letters, digits, "-" and "_". With wildcard, the first label may be
// "*".
func ValidHostname(h string, wildcard bool) bool { return validHostname(h, wildcard) }

// ParsePort parses a decimal port number in 1-65535.
func ParsePort(s string) (int, bool) { return parsePort(s) }

// ASCIILower lower-cases the ASCII letters of s (and only those).
func ASCIILower(s string) string { return asciiLower(s) }

// ASCIIUpper upper-cases the ASCII letters of s (and only those).
func ASCIIUpper(s string) string { return asciiUpper(s) }
