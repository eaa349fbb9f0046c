//! `byok-parse-bench`: do the parsers of untrusted input work in O(S) time
//! and memory on hostile inputs of size S?
//!
//! For every fuzz target ([`byok_ceremony::fuzzing::TARGETS`]: the same
//! entry points libFuzzer drives, so the same parsers and the same checks of
//! what they accept) and for sizes S from 4 KiB to 4 MiB, it builds inputs of
//! hostile shapes:
//!
//! * `seed+string`: the target's largest committed seed with its longest JSON
//!   string grown to S (long base64 fields, long names);
//! * `seed+members`: the seed's top-level object with S bytes of extra
//!   members (`"x0":0,"x1":0,…`: unknown-field and duplicate-key handling);
//! * `nesting`: `[[[[…]]]]` of S bytes (recursion);
//! * `lines`: the seed repeated on S/len lines (line-oriented parsers);
//!
//! and prints, per target and shape, the time per input byte at each S
//! (best of several runs) and the peak heap the parse allocated, as a
//! multiple of S. O(S) shows as a flat ns/byte column and a bounded
//! heap/S; a parser that refuses early (size limits) shows falling ns/byte.
//! Not a test: nothing here asserts; run it with
//! `cargo run --release --features bench --bin byok-parse-bench`.
#![allow(unsafe_code)] // the counting allocator below, and nothing else

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use byok_ceremony::fuzzing::TARGETS;

/// The system allocator, counting live and peak bytes.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to `System`; the counters are
// plain atomics and never affect the allocation itself.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const SIZES: [usize; 5] = [4 << 10, 32 << 10, 256 << 10, 1 << 20, 4 << 20];

/// The largest committed seed of a target (`fuzz/corpus/TARGET/seed-*`).
fn seed(target: &str) -> Vec<u8> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("seed"))
        .filter_map(|e| std::fs::read(e.path()).ok())
        .max_by_key(Vec::len)
        .unwrap_or_else(|| b"{}".to_vec())
}

/// The seed with its longest JSON string value grown to about `size` bytes.
fn grown_string(seed: &[u8], size: usize) -> Vec<u8> {
    let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(seed) else {
        return grown_lines(seed, size);
    };
    fn longest(v: &mut serde_json::Value) -> Option<&mut String> {
        match v {
            serde_json::Value::String(s) => Some(s),
            serde_json::Value::Array(a) => a.iter_mut().filter_map(longest).max_by_key(|s| s.len()),
            serde_json::Value::Object(o) => {
                o.values_mut().filter_map(longest).max_by_key(|s| s.len())
            }
            _ => None,
        }
    }
    if let Some(s) = longest(&mut v) {
        let fill = size.saturating_sub(seed.len());
        let c = s.chars().next().unwrap_or('A');
        s.extend(std::iter::repeat_n(c, fill));
    }
    serde_json::to_vec(&v).unwrap_or_default()
}

/// The seed's object with about `size` bytes of extra members.
fn grown_members(seed: &[u8], size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size + seed.len());
    out.push(b'{');
    let mut i = 0;
    while out.len() < size {
        out.extend_from_slice(format!("\"x{i}\":0,").as_bytes());
        i += 1;
    }
    // The seed's own members after the extras (so a parser reads them all).
    let body = seed
        .iter()
        .position(|&b| b == b'{')
        .map_or(&b"}"[..], |p| &seed[p + 1..]);
    out.extend_from_slice(body);
    out
}

fn nesting(size: usize) -> Vec<u8> {
    let mut out = vec![b'['; size / 2];
    out.extend(std::iter::repeat_n(b']', size / 2));
    out
}

fn grown_lines(seed: &[u8], size: usize) -> Vec<u8> {
    let line: Vec<u8> = seed
        .split(|&b| b == b'\n')
        .next()
        .unwrap_or_default()
        .to_vec();
    let mut out = Vec::with_capacity(size + line.len());
    while out.len() < size {
        out.extend_from_slice(&line);
        out.push(b'\n');
    }
    out
}

/// Best time of a few runs, and the peak heap above what was live before.
fn measure(f: fn(&[u8]), input: &[u8]) -> (Duration, usize) {
    let mut best = Duration::MAX;
    let mut peak = 0;
    let runs = if input.len() >= 1 << 20 { 3 } else { 10 };
    for _ in 0..runs {
        let base = LIVE.load(Ordering::Relaxed);
        PEAK.store(base, Ordering::Relaxed);
        let t = Instant::now();
        f(input);
        best = best.min(t.elapsed());
        peak = peak.max(PEAK.load(Ordering::Relaxed).saturating_sub(base));
    }
    (best, peak)
}

/// Builds an input of about the given size.
type Shape<'a> = Box<dyn Fn(usize) -> Vec<u8> + 'a>;

fn main() {
    println!("# Parsers on hostile inputs: ns per input byte, and peak heap / S");
    println!();
    let sizes: Vec<String> = SIZES.iter().map(|s| format!("{} KiB", s >> 10)).collect();
    println!(
        "| target | shape | {} | heap/S max | ns/byte: largest S ÷ smallest |",
        sizes.join(" | ")
    );
    println!("|---|---|{}---|---|", "---|".repeat(SIZES.len()));
    for (name, f) in TARGETS {
        let seed = seed(name);
        let shapes: [(&str, Shape); 4] = [
            ("seed+string", Box::new(|s| grown_string(&seed, s))),
            ("seed+members", Box::new(|s| grown_members(&seed, s))),
            ("nesting", Box::new(nesting)),
            ("lines", Box::new(|s| grown_lines(&seed, s))),
        ];
        for (shape, make) in &shapes {
            let mut cells = Vec::new();
            let mut per_byte = Vec::new();
            let mut heap_ratio: f64 = 0.0;
            for &size in &SIZES {
                let input = make(size);
                let (t, heap) = measure(f, &input);
                let ns = t.as_nanos() as f64 / input.len() as f64;
                per_byte.push(ns);
                heap_ratio = heap_ratio.max(heap as f64 / input.len() as f64);
                cells.push(format!("{ns:.2}"));
            }
            let growth = per_byte.last().copied().unwrap_or(0.0)
                / per_byte
                    .first()
                    .copied()
                    .unwrap_or(1.0)
                    .max(f64::MIN_POSITIVE);
            println!(
                "| `{name}` | {shape} | {} | {heap_ratio:.2} | {growth:.2} |",
                cells.join(" | ")
            );
        }
    }
}
