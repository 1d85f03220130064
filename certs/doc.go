// Package certs owns the certificates RustyGate serves: it loads PEM
// certificate and key pairs, validates them, selects one per TLS
// handshake by SNI, watches the files and swaps renewed pairs in, staples
// OCSP responses, rotates session ticket keys and builds the *tls.Config
// a listener terminates TLS with. It also checks the files named by the
// configuration's server.tls section for config.Load (see [Checker]).
//
// # Contract
//
// [New] loads every pair or fails naming the file and the reason
// ([PairError]); [OptionsFromConfig] turns server.tls into [Options]. A
// listener takes [Manager.TLSConfig] once and keeps it: [Manager.Update]
// (a configuration reload; [Prepare] then [Manager.Apply] when the
// reload loads every part before it changes any) and [Manager.Reload]
// (files changed) act on the configs already handed out. The selection table is immutable and
// published through an atomic.Pointer: [Manager.GetCertificate] takes no
// lock and allocates nothing. A renewed file is loaded off the handshake
// path; a broken, mismatched or expired replacement is refused with a log
// line and the previous pair keeps serving. OCSP responses are fetched in
// the background with a bounded timeout; a handshake never waits for
// one. [Manager.Certificates] lists what is served, with expiry dates,
// for metrics; [Manager.ExportTicketKeys] and [Manager.ImportTicketKeys]
// carry session resumption across a binary upgrade.
//
// With [Options.ACME], certificates for the configured hosts that no pair
// covers are obtained from an ACME CA (certmagic) in the background,
// renewed before expiry and kept in a file storage whose locks several
// processes may share; GetCertificate serves them after the pairs, and
// only for those hosts. The CA's validations are answered by the configs
// TLSConfig hands out (tls-alpn-01) and by [Manager.HandleHTTPChallenge],
// which the plain-HTTP listener calls before routing (http-01).
//
// [LoadClientPair] loads the client certificate the proxy presents to
// backends (mutual TLS to backends): validated like a served pair, but
// without the SAN requirement; l7 builds its client configs from it and
// [LoadClientCAs].
//
// # What this package must not do
//
// It does not listen, accept connections or speak HTTP to clients: the
// listeners (l7, l4) own their sockets and call [Manager.TLSConfig] and
// [Manager.HandleHTTPChallenge]. Its only network traffic is the OCSP
// requests to the responders named in the certificates and, with ACME,
// the requests to the CA (and, while a challenge is pending and nothing
// listens on the challenge port, certmagic's own solver listener).
package certs
