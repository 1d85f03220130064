// Package config owns the RustyGate configuration file: it parses the YAML,
// expands environment variables, fills in defaults and validates every
// field, and hands the rest of the gateway one immutable *Config.
//
// # Pipeline
//
// Load (or Parse, for bytes already in memory) runs four steps:
//
//  1. Parse: the YAML is decoded into a yaml.Node tree, never straight into
//     the structs, so that every value keeps its line number.
//  2. Expand and decode: the tree is walked against the yaml tags of the
//     types in types.go. Scalar values have ${VAR} and ${VAR:-default}
//     replaced from the environment ($$ is a literal $); expansion happens
//     after YAML parsing, so a variable can never inject YAML structure.
//     The walk is strict: an unknown key, a duplicated key or a value of
//     the wrong kind is an error. Anchors, aliases and << merge keys work.
//  3. Default: unset fields get their documented defaults and values are
//     put in canonical form (route paths lose a trailing "/", hosts are
//     lower-cased, methods upper-cased, backend URLs spelled
//     http://host:port[/base]). A number or duration written explicitly
//     as 0 is kept, so that validation can reject it.
//  4. Validate: every field is checked. Before that, admin.token_file is
//     read into admin.token (at every load, so a reload sees a rotated
//     token).
//
// # Middleware entries
//
// config knows no middleware kind: each middleware package registers its
// kind (RegisterMiddlewareKind, through the middleware registry) with a
// settings struct. An entry of a `middlewares:` list is decoded by the
// same walk: name and enabled, then its other keys strictly into the
// settings its kind's New returns, defaults filled. A route entry that
// overrides a global entry is decoded again over it (defaults, the
// global entry's keys, the route entry's keys), so a value written on
// the route always wins. Every entry's effective settings are resolved
// and validated through the kind's Resolve and Validate (see
// SettingsCheck), and Config.RouteMiddlewares returns them in chain
// order.
//
// # Providers
//
// providers.kubernetes turns the Kubernetes provider on (see
// providers/kubernetes); config only holds its settings. The gateway adds
// the provider's routes, built in code with a RouteMatch the file cannot
// write, to the file's before every snapshot, and validates the whole
// again.
//
// All problems found by steps 2 and 4 are collected and returned together
// as one *Errors value, one FieldError per problem, each naming the file,
// the line and the key path (server.listen, routes[2].backends[0].url).
//
// # What this package must not do
//
// Apart from reading the one file given to Load, the certificate, key
// and CA files it names (to check that they load and match), the admin
// token file it names, the ACME storage directory (it, or its nearest
// existing parent, must be a writable directory: a temporary file is
// created and removed there; nothing else is created), and looking up
// environment variables, config performs no I/O: it opens no sockets,
// resolves no host names, dials no backends and starts no goroutines.
// Checks that need the network (is the port free, does the backend
// answer) belong to the packages that own those resources. The
// certificate, key and CA files of server.tls are checked (readable,
// matching, valid now, with SANs) by the TLSFileChecker that the certs
// package registers, as are the CA and client certificate files of the
// routes' backend `tls` sections (client certificates need no SANs), so that TLS code stays in certs and `rustygate
// validate` still reports a bad pair at the line that names it.
package config
