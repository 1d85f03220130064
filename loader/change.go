package loader

import (
	"errors"
	"fmt"

	"github.com/rustygate/rustygate/config"
)

// Change is a prepared Update: the new policy is built and checked (in
// kernel mode, its interfaces exist) while the running one stays in
// force. Commit applies it; Revert, after a Commit, puts the settings in
// force before it back, for a reload that fails at a later step. The
// kernel keeps its buckets and bans throughout.
type Change struct {
	d         *Datapath
	cfg       config.Datapath
	pol       *policy
	prevCfg   config.Datapath
	prevPol   *policy
	committed bool
	reverted  bool
}

// errStale is returned by Commit when another update ran since Prepare.
var errStale = errors.New("datapath: settings changed since the update was prepared")

// Prepare checks that cfg can be applied with listenPorts as the
// gateway's listening ports, changing nothing: the error Update would
// return for a bad CIDR, port or interface comes from here.
func (d *Datapath) Prepare(cfg config.Datapath, listenPorts []int) (*Change, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed.Load() {
		return nil, ErrClosed
	}
	pol, err := newPolicy(cfg, listenPorts)
	if err != nil {
		return nil, err
	}
	if d.kern != nil {
		if err := d.kern.check(cfg); err != nil {
			return nil, err
		}
	}
	return &Change{d: d, cfg: cloneConfig(cfg), pol: pol, prevCfg: d.cfg, prevPol: d.pol.Load()}, nil
}

// Commit puts the prepared settings in force. On error the previous
// settings are written back, and nothing changed.
func (c *Change) Commit() error {
	d := c.d
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.closed.Load():
		return ErrClosed
	case c.committed:
		return errors.New("datapath: update already committed")
	case d.pol.Load() != c.prevPol:
		return errStale
	}
	old := d.cfg
	if c.cfg.Mode != old.Mode || c.cfg.BPFFS != old.BPFFS || c.cfg.Persist != old.Persist {
		d.log.Warn("datapath: mode, bpffs and persist changes apply at the next start",
			"mode", old.Mode, "new_mode", c.cfg.Mode, "bpffs", old.BPFFS, "new_bpffs", c.cfg.BPFFS)
	}
	if err := d.apply(c.cfg, c.pol); err != nil {
		if rerr := d.apply(c.prevCfg, c.prevPol); rerr != nil {
			return fmt.Errorf("%w (restoring the previous settings: %v)", err, rerr)
		}
		return err
	}
	c.committed = true
	return nil
}

// Revert puts back, after Commit, the settings in force before it. It
// does nothing on a change not committed or already reverted, and fails
// when another update ran since.
func (c *Change) Revert() error {
	d := c.d
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case !c.committed || c.reverted:
		return nil
	case d.closed.Load():
		return ErrClosed
	case d.pol.Load() != c.pol:
		return errStale
	}
	if err := d.apply(c.prevCfg, c.prevPol); err != nil {
		return err
	}
	c.reverted = true
	return nil
}

// apply writes cfg and its policy pol: in kernel mode into the maps and
// the attachments, in userspace into the limiter. d.mu is held.
func (d *Datapath) apply(cfg config.Datapath, pol *policy) error {
	if d.kern != nil {
		if err := d.kern.update(cfg, pol); err != nil {
			return err
		}
	} else {
		d.sources.setMax(pol.maxSources)
	}
	d.pol.Store(pol)
	d.cfg = cfg
	return nil
}
