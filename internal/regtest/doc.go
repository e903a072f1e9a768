// Package regtest runs a real registry for tests and benchmarks: Debian's
// docker-registry (the CNCF distribution registry 2.8) as a child process
// on loopback, optionally with htpasswd basic auth, TLS signed by a
// throwaway CA, or read-only storage, and a fault-injecting HTTP proxy in
// front of it.
//
// Start is for tests: it skips the test when docker-registry (or, for
// auth, htpasswd from apache2-utils) is not installed and stops the
// registry when the test ends. StartProcess is the same for benchmarks
// and tools, which call Close themselves. The registry runs in its own
// process group with a parent-death signal, so a test binary that dies
// leaves nothing behind.
//
// PushBlob, PutManifest, NewTestImage and PushImage put fixtures into a
// registry with nothing but net/http, so the code under test is not used
// to set up its own inputs.
//
// A Proxy forwards to a Registry and, per request, can answer with an
// error status, corrupt or truncate or replace a body, delay, or stall
// until the client gives up; it logs every request it sees so tests can
// assert how often a blob was fetched.
package regtest
