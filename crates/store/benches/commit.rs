//! Commit time as the state grows: one changed entry committed into a state of 1,000 and of
//! 10,000 entries, on the real file system (with every fsync of the commit protocol) and on a
//! file system that discards writes (the CPU cost alone: encoding, encryption, sealing). Prints
//! the 10,000 / 1,000 ratio of each, computed from criterion's own samples.

// The ratios are this benchmark's report.
#![allow(clippy::print_stdout)]

use std::any::Any;
use std::cell::Cell;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion};
use quarry_enclave::{Enclave, EnclaveError, Identity, SealKey, SealPolicy};
use quarry_store::fs::{FileSystem, LockGuard, StdFs, WriteFile};
use quarry_store::{SealMode, Store};

const SIZES: [usize; 2] = [1_000, 10_000];
/// About the size of a Marble or secret entry in the Coordinator's state.
const VALUE_LEN: usize = 400;

#[derive(Debug)]
struct BenchEnclave(Identity);

impl Enclave for BenchEnclave {
    fn quote(&self, _report_data: &[u8; 64]) -> Result<Vec<u8>, EnclaveError> {
        Err(EnclaveError::Refused("no quotes in the benchmark".into()))
    }

    fn seal_key(&self, _policy: SealPolicy) -> Result<SealKey, EnclaveError> {
        Ok(SealKey::new(vec![0x42; 16]))
    }

    fn identity(&self) -> &Identity {
        &self.0
    }

    fn is_simulation(&self) -> bool {
        true
    }
}

/// A file system that accepts everything and keeps nothing.
#[derive(Debug)]
struct NullFs;

struct NullFile;

impl WriteFile for NullFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        std::hint::black_box(buf);
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl FileSystem for NullFs {
    fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }
    fn try_lock(&self, _path: &Path) -> io::Result<Option<LockGuard>> {
        Ok(Some(Box::new(()) as Box<dyn Any + Send + Sync>))
    }
    fn read(&self, _path: &Path, _limit: u64) -> io::Result<Option<Vec<u8>>> {
        Ok(None)
    }
    fn create(&self, _path: &Path) -> io::Result<Box<dyn WriteFile>> {
        Ok(Box::new(NullFile))
    }
    fn rename(&self, _from: &Path, _to: &Path) -> io::Result<()> {
        Ok(())
    }
    fn remove_file(&self, _path: &Path) -> io::Result<()> {
        Ok(())
    }
    fn exists(&self, _path: &Path) -> io::Result<bool> {
        Ok(false)
    }
    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }
}

fn store_with(entries: usize, dir: &Path, fs: Arc<dyn FileSystem>) -> Store {
    let enclave = Arc::new(BenchEnclave(Identity {
        mrenclave: [1; 32],
        mrsigner: [2; 32],
        isv_prod_id: 1,
        isv_svn: 1,
        debug: false,
    }));
    let store = Store::open_with_fs(dir, enclave, fs).expect("open the benchmark store");
    let mut txn = store.begin();
    for i in 0..entries {
        txn.put(format!("marble:{i:06}"), vec![(i % 251) as u8; VALUE_LEN]);
    }
    txn.set_seal_mode(SealMode::ProductKey);
    txn.commit().expect("initial commit");
    store
}

/// Benchmarks one commit per iteration; returns the mean time per commit over all samples.
fn bench_commits(c: &mut Criterion, group: &str, fs: &dyn Fn() -> Arc<dyn FileSystem>) -> Vec<f64> {
    let mut means = Vec::new();
    let mut g = c.benchmark_group(group);
    g.sample_size(20).measurement_time(Duration::from_secs(6));
    for entries in SIZES {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = store_with(entries, dir.path(), fs());
        let total = Cell::new(Duration::ZERO);
        let count = Cell::new(0u64);
        g.bench_with_input(BenchmarkId::from_parameter(entries), &entries, |b, _| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for i in 0..iters {
                    let mut txn = store.begin();
                    txn.put("marble:000000", i.to_le_bytes().to_vec());
                    txn.commit().expect("commit");
                }
                let elapsed = start.elapsed();
                total.set(total.get() + elapsed);
                count.set(count.get() + iters);
                elapsed
            });
        });
        means.push(total.get().as_secs_f64() / count.get().max(1) as f64);
    }
    g.finish();
    means
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let disk = bench_commits(&mut c, "commit_fsync", &|| Arc::new(StdFs));
    let cpu = bench_commits(&mut c, "commit_cpu_only", &|| Arc::new(NullFs));
    c.final_summary();

    for (name, means) in [("real file system", &disk), ("writes discarded", &cpu)] {
        println!(
            "commit, {name}: 1,000 entries {:.3} ms, 10,000 entries {:.3} ms, ratio {:.2}",
            means[0] * 1e3,
            means[1] * 1e3,
            means[1] / means[0]
        );
    }
}
