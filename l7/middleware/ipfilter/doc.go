// Package ipfilter is the ip_filter request policy: per-route lists of
// addresses allowed and denied at L7 (the kernel's allow and deny lists
// stay global to the listener).
//
// The rule is: a client in `deny` is refused; otherwise, when `allow` is
// not empty, a client not in `allow` is refused; otherwise it goes on.
// Deny wins over allow whatever the order of the entries, so a narrow
// deny inside a wide allow works as written. Refused requests get 403
// with a small JSON body, counted in rustygate_ip_filter_rejected_total
// by reason ("deny" or "not_allowed").
//
// The client is the TCP peer or, behind `trusted_proxies`, the address
// found in X-Forwarded-For the way rate_limit finds it (package
// clientip). Lists are merged into sorted, non-overlapping address
// ranges per family when the route is built; a lookup is a binary search
// and allocates nothing.
package ipfilter
