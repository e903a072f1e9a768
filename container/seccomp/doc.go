// Package seccomp turns seccomp profiles into the classic BPF programs
// the kernel runs on every system call of a filtered process, in pure Go
// (no libseccomp, so CGO_ENABLED=0 builds keep working).
//
// A profile is the OCI runtime spec's form, specs.LinuxSeccomp (a
// config.json's linux.seccomp). Default gives Docker's default profile
// (the data of github.com/moby/profiles/seccomp) with its rules chosen,
// as Docker chooses them, for a process's capabilities, the host's
// architecture and kernel; FromDocker does the same for a profile in
// Docker's JSON form (the file of `docker run --security-opt
// seccomp=profile.json`). Compile checks a profile and compiles it for
// the host's architecture; the Program it returns is cached by the
// profile's content for the life of the process, so compiling the same
// profile again costs a hash. Docker's default profile compiles to about
// 500 instructions on amd64 (x86_64, i386 and x32).
//
// What Compile implements, as runc does with libseccomp:
//
//   - actions SCMP_ACT_ALLOW, SCMP_ACT_ERRNO (errnoRet, EPERM when
//     unset), SCMP_ACT_KILL and SCMP_ACT_KILL_THREAD, SCMP_ACT_KILL_PROCESS,
//     SCMP_ACT_TRAP, SCMP_ACT_TRACE (errnoRet as its data) and SCMP_ACT_LOG,
//     for the default action (defaultErrnoRet) and each rule;
//     SCMP_ACT_NOTIFY (a listener) is refused;
//   - argument conditions SCMP_CMP_EQ, NE, LT, LE, GT, GE and MASKED_EQ
//     (value is the mask, valueTwo what the masked argument must equal),
//     compared as unsigned 64-bit values (32-bit on 32-bit ABIs); the
//     conditions of one rule must all hold, except that a rule naming the
//     same argument twice is, as in runc, one rule per condition;
//   - the profile's architectures: on amd64 SCMP_ARCH_X86_64, SCMP_ARCH_X86
//     (i386) and SCMP_ARCH_X32, on arm64 SCMP_ARCH_AARCH64 and SCMP_ARCH_ARM.
//     x32 system calls carry the 0x40000000 bit with the x86_64 audit
//     architecture, so they are told apart before any x86_64 rule is
//     tried: when the profile lists SCMP_ARCH_X32, those below 512 (x86_64's
//     numbers and calls with the bit) get x86_64's decision and x32's own
//     (512 on) their rules; otherwise every x32 call kills the process.
//     Either way an x32 call can never do what the same x86_64 call may
//     not. A call from an architecture the
//     profile does not list kills the process, as libseccomp's default
//     bad-architecture action does. An empty architecture list means the
//     host's native one;
//   - flags SECCOMP_FILTER_FLAG_LOG and SECCOMP_FILTER_FLAG_SPEC_ALLOW.
//
// For one system call, the rules with conditions are tried in the order
// of the profile and the first that matches decides; then a rule without
// conditions, if the profile has one; then the default action. A name
// that an architecture's table lacks is skipped for that architecture, as
// libseccomp does (Docker's profile lists calls of many architectures); a
// name no table knows is an error, as are an unknown action, operator or
// flag, an argument index past 5, a profile whose architectures exclude
// the host's, and conflicting rules. Every error matches ErrInvalidProfile.
package seccomp
