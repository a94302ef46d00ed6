//! Scheduling of the inference threads: the video first.

/// Makes this thread, and the ONNX Runtime threads it creates afterwards (they inherit it), yield
/// the CPU to the video: without this, waking the worker for a frame let it and its pool preempt
/// the streaming thread on a 2-core machine for a whole inference (measured: 5 ms p99 per buffer
/// at 1080p30). Niceness alone only sets the share of the CPU: Linux's EEVDF scheduler still lets
/// a niced thread that slept a while preempt the video when woken (measured: the preparer, woken
/// by the streaming thread, held it 0.5 ms per frame, the length of a conversion), so a positive
/// niceness also selects `SCHED_BATCH`, whose threads never preempt on wake-up. Never raises
/// priority; a failure only costs smoothness.
pub fn lower_priority(nice: i32) -> Result<i32, std::io::Error> {
    // SAFETY: plain system calls on this thread's own id; the only memory passed is a local
    // `sched_param` read during the call.
    unsafe {
        let tid = libc::gettid();
        *libc::__errno_location() = 0;
        let current = libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t);
        let error = std::io::Error::last_os_error();
        if current == -1 && error.raw_os_error() != Some(0) {
            return Err(error);
        }
        let target = current.max(nice);
        if target > 0 && libc::sched_getscheduler(tid) == libc::SCHED_OTHER {
            let param = libc::sched_param { sched_priority: 0 };
            if libc::sched_setscheduler(tid, libc::SCHED_BATCH, &param) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        // Setting the policy resets nothing else, but set the niceness after it all the same.
        if libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, target) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(target)
    }
}
