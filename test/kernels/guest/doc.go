// Package guest holds the tests that make test-kernels runs inside each
// kernel of the matrix (test/kernels/run.sh), next to the loader and l4
// tests: they probe the BPF features RustyGate relies on and assert, per
// kernel version, which features exist and which mode and reason the
// loader reports for its limiter.
//
// The tests run only in the matrix's VMs, where the init program sets
// RUSTYGATE_KERNEL (e.g. "6.1"); elsewhere they skip.
package guest
