package certs

import (
	"bytes"
	"errors"
	"time"
)

// Reload re-reads the files of every pair and serves the replacements
// that are valid; a broken, mismatched or expired replacement is refused
// with a log line naming the file and the reason, and the previous pair
// keeps serving. It returns the refusals. The file watcher calls it; a
// SIGHUP or an admin action may too.
func (m *Manager) Reload() error {
	m.mu.Lock()
	var errs []error
	changed := false
	now := time.Now()
	for _, ps := range m.pairs {
		ok, err := m.reloadPair(ps, now)
		changed = changed || ok
		if err != nil {
			errs = append(errs, err)
		}
	}
	if changed {
		m.publish()
	}
	onChange := m.opts.OnChange
	m.mu.Unlock()
	if changed && onChange != nil {
		onChange()
	}
	return errors.Join(errs...)
}

// reloadPair loads the files of ps again and reports whether what it
// serves changed. m.mu is held.
func (m *Manager) reloadPair(ps *pairState, now time.Time) (bool, error) {
	certPEM, keyPEM, err := readPair(ps.files.CertFile, ps.files.KeyFile)
	if err != nil {
		m.refuse(ps, nil, nil, err)
		return false, err
	}
	if ps.pair.sameFiles(certPEM, keyPEM) {
		ps.failedCert, ps.failedKey, ps.failedErr = nil, nil, ""
		return false, nil
	}
	p, err := ParsePair(ps.files.CertFile, certPEM, ps.files.KeyFile, keyPEM, now)
	if err != nil {
		m.refuse(ps, certPEM, keyPEM, err)
		return false, err
	}
	ps.pair, ps.served = p, p.Certificate
	ps.failedCert, ps.failedKey, ps.failedErr = nil, nil, ""
	m.log.Info("certificate reloaded", "cert_file", p.CertFile, "key_file", p.KeyFile,
		"serial", p.Leaf().SerialNumber.Text(16), "not_after", p.Leaf().NotAfter.UTC())
	if m.opts.OCSPStapling {
		m.stopStapler(ps)
		m.startStapler(ps)
	}
	return true, nil
}

// refuse logs a refused replacement, once per distinct failure.
func (m *Manager) refuse(ps *pairState, certPEM, keyPEM []byte, err error) {
	if err.Error() == ps.failedErr && bytes.Equal(certPEM, ps.failedCert) && bytes.Equal(keyPEM, ps.failedKey) {
		return
	}
	ps.failedCert, ps.failedKey, ps.failedErr = certPEM, keyPEM, err.Error()
	attrs := []any{"cert_file", ps.files.CertFile, "key_file", ps.files.KeyFile, "error", err.Error()}
	var pe *PairError
	if errors.As(err, &pe) {
		attrs = append(attrs, "file", pe.File, "reason", pe.Reason)
	}
	m.log.Warn("certificate reload refused; the previous certificate keeps serving", attrs...)
}
