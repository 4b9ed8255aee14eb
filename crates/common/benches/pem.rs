//! The cost of reading PEM values (users' certificates, recovery keys) as Go's `pem.Decode`
//! does, on texts built so that every BEGIN line is a candidate that fails late, against an
//! ordinary block of the same size. A reader that searches the rest of the text for each
//! candidate is quadratic on them (minutes per MiB); `pem_decode` must stay within a small
//! factor of the ordinary block. The summary lines give each shape's time and its ratio.

#![allow(clippy::print_stdout)] // the summary lines are what this benchmark reports

use std::hint::black_box;
use std::time::{Duration, Instant};

use base64::Engine as _;
use criterion::{Criterion, criterion_group, criterion_main};
use quarry_common::go::pem_decode;

/// The size of every text.
const SIZE: usize = 512 * 1024;

/// An ordinary PEM block of about `SIZE` bytes: base64 in 64-character lines.
fn ordinary() -> String {
    let der = vec![0x5au8; SIZE * 3 / 4 - 64];
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

/// Texts of about `SIZE` bytes whose candidates all fail late, by name.
fn adversarial() -> Vec<(&'static str, String)> {
    let begin = "-----BEGIN X-----\n";
    let begins = begin.repeat(SIZE / begin.len());
    let with_header = "-----BEGIN X-----\na: b\n".repeat(SIZE / 22);
    vec![
        ("begin_lines_without_end", begins.clone()),
        ("header_lines_without_end", with_header.clone()),
        ("begin_lines_one_end", format!("{begins}-----END X-----\n")),
        (
            "header_lines_one_end",
            format!("{with_header}\n-----END X-----\n"),
        ),
        (
            "one_end_with_long_tail",
            format!("{begins}-----END X-----{}x\n", " ".repeat(SIZE)),
        ),
        (
            "one_end_of_other_type",
            format!("{begins}-----END Y-----\n"),
        ),
        (
            "bodies_not_base64",
            format!(
                "{}-----END X-----\n",
                "-----BEGIN X-----\n*\n".repeat(SIZE / 20)
            ),
        ),
    ]
}

fn median_time(text: &str, rounds: u32) -> Duration {
    let mut times: Vec<Duration> = (0..rounds)
        .map(|_| {
            let started = Instant::now();
            black_box(pem_decode(black_box(text.as_bytes())));
            started.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

fn pem(c: &mut Criterion) {
    let ordinary = ordinary();
    let shapes = adversarial();
    let mut group = c.benchmark_group("pem_decode");
    group.measurement_time(Duration::from_secs(2));
    group.sample_size(10);
    group.bench_function("baseline_ordinary_block", |b| {
        b.iter(|| pem_decode(black_box(ordinary.as_bytes())))
    });
    for (name, text) in &shapes {
        group.bench_function(*name, |b| b.iter(|| pem_decode(black_box(text.as_bytes()))));
    }
    group.finish();

    // The ratios, measured in alternation in this run.
    for (name, text) in &shapes {
        let (mut base, mut shape) = (Vec::new(), Vec::new());
        for _ in 0..5 {
            base.push(median_time(&ordinary, 3));
            shape.push(median_time(text, 3));
        }
        base.sort();
        shape.sort();
        let (base, shape) = (base[2], shape[2]);
        println!(
            "pem_decode {name}: {shape:?} for {} bytes, {:.2}x the ordinary block ({base:?})",
            text.len(),
            shape.as_secs_f64() / base.as_secs_f64()
        );
    }
}

criterion_group!(benches, pem);
criterion_main!(benches);
