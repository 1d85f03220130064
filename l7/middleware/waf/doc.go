// Package waf is the `waf` middleware: a web application firewall per
// route. It runs the OWASP Core Rule Set (embedded, from
// coraza-coreruleset) and SecLang rules of the configuration on the
// Coraza engine, and simple regex rules on headers, path, query and body
// without it.
//
// It owns its settings and their validation (the SecLang rules are
// compiled when the configuration is checked, and a rule that does not
// parse is reported at its line), the compiled rule sets (one per
// distinct set of directives, shared by routes and kept over reloads
// while in use), its metrics and its audit lines. Request bodies are
// inspected up to max_body_bytes through the exchange's bounded body
// prefix: the body still streams to the backend. A refusal is reported
// to the Reporter as policy "waf", which the ban machinery counts
// (datapath.bans.waf_blocks). It never reads response bodies.
package waf
