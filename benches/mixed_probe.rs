//! A standalone reproduction of the mixed-workload cost (issue 24): the
//! small call and a bare fork, each straight after a pipe round trip or
//! after nothing, with the CPU the parent and the child ran on recorded
//! for every call, so the times can be split by where the scheduler put
//! the child.
//!
//! `cargo bench -p mem-isolate-benches --bench mixed_probe` runs every
//! combination rotated in one process and prints medians split by
//! placement, and the CPU time the parent and the child spent (means:
//! unlike wall time, CPU time does not count waiting for a CPU another
//! program holds). `-- one BEFORE SIDE N` runs one combination `N` times
//! and nothing else, to profile it alone (`perf stat`, `perf record`,
//! `perf sched`): BEFORE is `none`, `pipe` or `thrash` (a read of 4 MiB,
//! which evicts caches with no system call); SIDE is `ours`, `bare`,
//! `floor`, or one of the parent wait strategies and placements tried
//! on the floor: `floorspin` (look without blocking for 150 µs first),
//! `flooryield` (the same, yielding between looks), `floorpin` (the
//! child started on the parent's CPU).
mod support;

// Linux only: it reads the CPU each process ran on (`sched_getcpu`), pins
// (`sched_setaffinity`) and arms `PR_SET_PDEATHSIG`. Elsewhere it does
// nothing.
#[cfg(target_os = "linux")]
mod probe {
    use super::support;

    use std::hint::black_box;
    use std::time::{Duration, Instant};

    use mem_isolate::execute_in_isolated_process;
    use support::mixed::pipe_round_trip;

    fn cpu() -> i32 {
        // SAFETY: no arguments; async-signal-safe.
        unsafe { libc::sched_getcpu() }
    }

    /// One timed call, and where it ran: `(time, parent CPU before the fork,
    /// child CPU, parent CPU after, CPU time the parent's thread spent,
    /// CPU time the child spent)`.
    type Sample = (Duration, i32, i32, i32, Duration, Duration);

    /// This thread's CPU time, and that of every child reaped so far.
    fn cpu_times() -> (Duration, Duration) {
        // SAFETY: both calls fill the structs they are given.
        unsafe {
            let mut ts: libc::timespec = std::mem::zeroed();
            libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut ts);
            let mut u: libc::rusage = std::mem::zeroed();
            libc::getrusage(libc::RUSAGE_CHILDREN, &raw mut u);
            let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
            (
                Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32),
                tv(u.ru_utime) + tv(u.ru_stime),
            )
        }
    }

    fn ours() -> i32 {
        black_box(execute_in_isolated_process(cpu).unwrap())
    }

    fn bare(page: *mut i32) -> i32 {
        // SAFETY: the child only writes the shared page and leaves.
        unsafe {
            let pid = libc::fork();
            assert!(pid >= 0);
            if pid == 0 {
                page.write_volatile(cpu());
                libc::_exit(0);
            }
            let mut status = 0;
            assert_eq!(libc::waitpid(pid, &raw mut status, 0), pid);
            page.read_volatile()
        }
    }

    /// The raw floor of a default small call (see
    /// `support::raw_isolation_floor_with_group`), recording the child's CPU.
    fn floor(page: *mut i32) -> i32 {
        // SAFETY: as in `bare`; `waitid` fills the `siginfo_t` it is given.
        unsafe {
            let pid = libc::fork();
            assert!(pid >= 0);
            if pid == 0 {
                libc::setpgid(0, 0);
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                libc::getppid();
                page.write_volatile(cpu());
                libc::_exit(0);
            }
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::waitid(
                libc::P_PID,
                pid.unsigned_abs(),
                &raw mut info,
                libc::WEXITED | libc::WNOWAIT,
            );
            libc::kill(-pid, libc::SIGKILL);
            let mut status = 0;
            assert_eq!(libc::waitpid(pid, &raw mut status, 0), pid);
            page.read_volatile()
        }
    }

    /// [`floor`], but the parent first looks for the exit without blocking,
    /// yielding between looks, for up to `SPIN` before it blocks: a wait
    /// strategy that keeps the parent's CPU from idling while a child on the
    /// other CPU runs.
    fn floor_spin(page: *mut i32, yield_: bool) -> i32 {
        const SPIN: Duration = Duration::from_micros(150);
        // SAFETY: as in `floor`.
        unsafe {
            let pid = libc::fork();
            assert!(pid >= 0);
            if pid == 0 {
                libc::setpgid(0, 0);
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                libc::getppid();
                page.write_volatile(cpu());
                libc::_exit(0);
            }
            let mut info: libc::siginfo_t;
            let t = Instant::now();
            loop {
                info = std::mem::zeroed();
                libc::waitid(
                    libc::P_PID,
                    pid.unsigned_abs(),
                    &raw mut info,
                    libc::WEXITED | libc::WNOWAIT | libc::WNOHANG,
                );
                if info.si_pid() != 0 {
                    break;
                }
                if t.elapsed() > SPIN {
                    libc::waitid(
                        libc::P_PID,
                        pid.unsigned_abs(),
                        &raw mut info,
                        libc::WEXITED | libc::WNOWAIT,
                    );
                    break;
                }
                if yield_ {
                    libc::sched_yield();
                } else {
                    std::hint::spin_loop();
                }
            }
            libc::kill(-pid, libc::SIGKILL);
            let mut status = 0;
            assert_eq!(libc::waitpid(pid, &raw mut status, 0), pid);
            page.read_volatile()
        }
    }

    /// Evicts this CPU's caches without a system call or a write (a write
    /// would be a copy-on-write fault after every fork): reads a 4 MiB
    /// buffer, larger than the L2 cache and a share of the L3.
    fn thrash() {
        thread_local! {
            static BUF: Vec<u64> = (0..1u64 << 19).collect();
        }
        BUF.with(|b| black_box(b.iter().fold(0u64, |x, v| x.wrapping_add(*v))));
    }

    /// [`floor`], with the child started on the parent's CPU whatever the
    /// scheduler's fork balancing would pick: the parent pins itself to its
    /// CPU around the fork (the child inherits the mask), and the child
    /// restores the original mask first thing, so that only its placement
    /// changes.
    fn floor_pinned(page: *mut i32) -> i32 {
        // SAFETY: as in `floor`; the affinity calls read and write the sets
        // they are given.
        unsafe {
            let mut mask: libc::cpu_set_t = std::mem::zeroed();
            libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &raw mut mask);
            let mut here: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu() as usize, &mut here);
            libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &raw const here);
            let pid = libc::fork();
            assert!(pid >= 0);
            if pid == 0 {
                libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &raw const mask);
                libc::setpgid(0, 0);
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                libc::getppid();
                page.write_volatile(cpu());
                libc::_exit(0);
            }
            libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &raw const mask);
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::waitid(
                libc::P_PID,
                pid.unsigned_abs(),
                &raw mut info,
                libc::WEXITED | libc::WNOWAIT,
            );
            libc::kill(-pid, libc::SIGKILL);
            let mut status = 0;
            assert_eq!(libc::waitpid(pid, &raw mut status, 0), pid);
            page.read_volatile()
        }
    }

    fn sample(before: &str, side: &str, page: *mut i32) -> Sample {
        match before {
            "pipe" => pipe_round_trip(),
            "thrash" => thrash(),
            _ => {}
        }
        let p0 = cpu();
        let (self0, kids0) = cpu_times();
        let t = Instant::now();
        let c = match side {
            "ours" => ours(),
            "bare" => bare(page),
            "floorspin" => floor_spin(page, false),
            "floorpin" => floor_pinned(page),
            "flooryield" => floor_spin(page, true),
            _ => floor(page),
        };
        let d = t.elapsed();
        let (self1, kids1) = cpu_times();
        (d, p0, c, cpu(), self1 - self0, kids1 - kids0)
    }

    fn median(mut v: Vec<Duration>) -> Option<Duration> {
        v.sort();
        v.get(v.len() / 2).copied()
    }

    pub fn main() {
        let args: Vec<String> = std::env::args()
            .skip(1)
            .filter(|a| !a.starts_with("--"))
            .collect();
        // A page shared with the children of the raw sides, for their CPU.
        let page = support::shared_page().cast::<i32>();
        if args.first().map(String::as_str) == Some("one") {
            let n: usize = args.get(3).and_then(|n| n.parse().ok()).unwrap_or(2000);
            let samples: Vec<Sample> = (0..n).map(|_| sample(&args[1], &args[2], page)).collect();
            let same = samples.iter().filter(|s| s.1 == s.2).count();
            println!(
                "{} then {}: median {:.3?}, child on the parent's CPU {:.0}%",
                args[1],
                args[2],
                median(samples.iter().map(|s| s.0).collect()).unwrap(),
                100.0 * same as f64 / n as f64
            );
            return;
        }
        let combos = [
            ("none", "ours"),
            ("none", "bare"),
            ("none", "floor"),
            ("pipe", "ours"),
            ("pipe", "bare"),
            ("pipe", "floor"),
            ("thrash", "ours"),
            ("thrash", "bare"),
            ("thrash", "floor"),
        ];
        let rounds = support::rounds(1500);
        let mut all: Vec<Vec<Sample>> = vec![Vec::new(); combos.len()];
        for round in 0..rounds {
            for k in 0..combos.len() {
                let i = (round + k) % combos.len();
                all[i].push(sample(combos[i].0, combos[i].1, page));
            }
        }
        let base = |before: &str| {
            let i = combos.iter().position(|c| *c == (before, "bare")).unwrap();
            median(all[i].iter().map(|s| s.0).collect()).unwrap()
        };
        println!(
            "| before | side | median | / bare, same before | child on parent's CPU | median, child on parent's CPU | median, child elsewhere | parent moved | parent CPU, mean | child CPU, mean |"
        );
        println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
        for (i, (before, side)) in combos.iter().enumerate() {
            let s = &all[i];
            let m = median(s.iter().map(|s| s.0).collect()).unwrap();
            let same: Vec<Duration> = s.iter().filter(|s| s.1 == s.2).map(|s| s.0).collect();
            let other: Vec<Duration> = s.iter().filter(|s| s.1 != s.2).map(|s| s.0).collect();
            let moved = s.iter().filter(|s| s.1 != s.3).count();
            let share = 100.0 * same.len() as f64 / s.len() as f64;
            let fmt = |d: Option<Duration>| d.map_or("-".to_string(), |d| format!("{d:.1?}"));
            let mean =
                |f: fn(&Sample) -> Duration| s.iter().map(f).sum::<Duration>() / s.len() as u32;
            println!(
                "| {before} | {side} | {m:.1?} | {:.3}x | {share:.0}% | {} | {} | {:.0}% | {:.1?} | {:.1?} |",
                m.as_secs_f64() / base(before).as_secs_f64(),
                fmt(median(same)),
                fmt(median(other)),
                100.0 * moved as f64 / s.len() as f64,
                mean(|s| s.4),
                mean(|s| s.5)
            );
        }
    }
}

fn main() {
    #[cfg(target_os = "linux")]
    probe::main();
}
