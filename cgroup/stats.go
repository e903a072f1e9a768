package cgroup

// Stats is the resource use of a cgroup and its descendants. Counters are
// cumulative since the cgroup was created. A value the host does not track
// (its controller is not mounted, or the kernel lacks the file) is 0.
type Stats struct {
	// CPU time, in nanoseconds, and CFS bandwidth throttling.
	CPU struct {
		UsageNs          uint64 // CPU time used, user plus system
		UserNs           uint64 // CPU time in user mode
		SystemNs         uint64 // CPU time in kernel mode
		Periods          uint64 // CFS periods that had runnable tasks (with a quota set)
		ThrottledPeriods uint64 // periods in which the quota ran out
		ThrottledNs      uint64 // total time throttled
	}
	// Memory in bytes, and OOM counts.
	Memory struct {
		Usage     uint64 // memory in use now, page cache included
		MaxUsage  uint64 // the highest Usage seen (v2: memory.peak, kernel 5.19+)
		Limit     uint64 // the hard limit; 0 = unlimited
		Cache     uint64 // page cache (v1 total_cache, v2 file)
		RSS       uint64 // anonymous memory (v1 total_rss, v2 anon)
		Swap      uint64 // swap in use
		OOMEvents uint64 // times the limit was hit and the OOM killer ran (v2 memory.events oom; v1 has no such counter and reports OOMKills)
		OOMKills  uint64 // processes killed by the OOM killer
	}
	// Pids counts tasks: processes and threads.
	Pids struct {
		Current uint64 // tasks now, zombies not yet reaped included
		Limit   uint64 // the pids limit; 0 = unlimited
	}
}
