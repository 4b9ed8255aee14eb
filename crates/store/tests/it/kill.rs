//! Real process kills: the test binary runs itself as a child that commits in a loop, and the
//! parent kills it by pid at seeded random points, 200 times. After every kill the store must
//! reopen to a whole generation at least as new as the last one the child reported, without
//! recovery. (A kill cannot catch a missing fsync, because the kernel keeps the page cache; the
//! power-loss tests in `crash` do.)

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use quarry_store::{SealMode, Status, Store};

use crate::support::{TestEnclave, commit_entries, entries, generation, open_store, spawn};

const CHILD_DIR_ENV: &str = "QUARRY_STORE_TEST_KILL_DIR";
const KILLS: u32 = 200;
const ENTRIES: usize = 50;

/// A small seeded generator (SplitMix64), so that every run kills at the same kind of points.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn generation_of(store: &Store) -> u64 {
    store
        .snapshot()
        .get(b"generation")
        .map(|g| std::str::from_utf8(g).unwrap().parse().unwrap())
        .unwrap_or(0)
}

#[test]
#[ignore = "child side of killed_commit_loops_never_need_recovery, started by it"]
fn commit_loop_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR_ENV) else {
        return;
    };
    let store = open_store(std::path::Path::new(&dir), TestEnclave::standard()).unwrap();
    if store.status() == Status::Sealed {
        store.unseal(&[]).unwrap();
    }
    let mut out = std::io::stdout().lock();
    for gen_ in generation_of(&store) + 1.. {
        commit_entries(&store, &generation(ENTRIES, gen_), SealMode::ProductKey).unwrap();
        writeln!(out, "committed {gen_}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn killed_commit_loops_never_need_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let enclave = TestEnclave::standard();
    let mut rng = SplitMix(0x5eed_2026_1204);
    let mut acked = 0u64;
    let mut interrupted = 0u32;

    for kill in 0..KILLS {
        let mut child = spawn(
            Command::new(&exe)
                .args([
                    "--exact",
                    "kill::commit_loop_child",
                    "--ignored",
                    "--nocapture",
                ])
                .args(["--test-threads", "1"])
                .env(CHILD_DIR_ENV, dir.path())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit()),
        )
        .unwrap();
        let wait_for = 1 + rng.next() % 3;
        let mut seen = 0;
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        while seen < wait_for {
            let line = lines
                .next()
                .expect("child stopped before committing")
                .unwrap();
            if let Some(gen_) = line.strip_prefix("committed ") {
                acked = acked.max(gen_.parse().unwrap());
                seen += 1;
            }
        }
        // A seeded amount of work before the kill moves it to different steps of the next
        // commit; nothing is asserted about where it lands.
        let spins = rng.next() % 200_000;
        let mut x = 0u64;
        for i in 0..spins {
            x = std::hint::black_box(x.wrapping_add(i));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        drop(lines);

        if dir.path().join("sealed_data.tmp").exists() || dir.path().join("sealed_key.tmp").exists()
        {
            interrupted += 1;
        }
        let store = open_store(dir.path(), enclave.clone()).unwrap();
        if let Err(error) = store.unseal(&[]) {
            panic!("kill {kill}: reopening failed: {error:#?}");
        }
        let found = generation_of(&store);
        assert!(
            found >= acked,
            "kill {kill}: generation {found} is older than acked {acked}"
        );
        assert_eq!(
            entries(&store.snapshot()),
            generation(ENTRIES, found),
            "kill {kill}"
        );
        acked = found;
    }
    eprintln!("{KILLS} kills, {interrupted} left temporary files, last generation {acked}");
    assert!(acked >= u64::from(KILLS));
}
