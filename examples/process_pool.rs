//! The concurrent.futures cheat sheet's ProcessPoolExecutor program, in ringloop: prints
//! exactly what CPython 3.11 prints for it.
//!
//! ```python
//! def my_func(value):
//!     value = value ** 5
//!     value = value ** 4
//!     value = value ** 3
//!     value = value / 100000
//!     return value ** 2
//! ```
//!
//! Python's `**` on integers is exact and `/` rounds once, so `my_func` computes `value**60`
//! exactly (a small big-integer product), divides by 100000 with one rounding (decimal
//! digits parsed as a float: Rust's parser rounds correctly, as Python's division does), and
//! squares with `pow`, as CPython's float `**` does. Floats print as Python's `repr`.

use ringloop::ProcessPool;

/// `value**60 / 100000` rounded once, then squared: CPython's `my_func`.
fn my_func(value: u32) -> f64 {
    let digits = pow_decimal(value, 60);
    // digits * 10^-5, correctly rounded to the nearest f64.
    let quotient: f64 = format!("{digits}e-5").parse().expect("decimal digits");
    quotient.powf(2.0)
}

/// `base^exp` as decimal digits (exact).
fn pow_decimal(base: u32, exp: u32) -> String {
    // Little-endian limbs of 10^9.
    let mut limbs: Vec<u64> = vec![1];
    for _ in 0..exp {
        let mut carry = 0u64;
        for limb in &mut limbs {
            let v = *limb * u64::from(base) + carry;
            *limb = v % 1_000_000_000;
            carry = v / 1_000_000_000;
        }
        if carry > 0 {
            limbs.push(carry);
        }
    }
    let mut s = limbs.last().expect("one limb").to_string();
    for limb in limbs.iter().rev().skip(1) {
        s.push_str(&format!("{limb:09}"));
    }
    s
}

/// Python's `repr(float)`: the shortest digits that round-trip, in scientific notation when
/// the exponent is below -4 or at least 16, with a signed exponent of at least two digits.
fn py_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.into();
    }
    // Rust's `{:e}` gives the shortest round-trip digits: "d.ddde±x".
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci.split_once('e').expect("exponent");
    let exp: i32 = exp.parse().expect("exponent digits");
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if (-4..16).contains(&exp) {
        let point = exp + 1; // digits before the decimal point
        if point <= 0 {
            format!("{sign}0.{}{digits}", "0".repeat((-point) as usize))
        } else if point as usize >= digits.len() {
            format!(
                "{sign}{digits}{}.0",
                "0".repeat(point as usize - digits.len())
            )
        } else {
            let (int, frac) = digits.split_at(point as usize);
            format!("{sign}{int}.{frac}")
        }
    } else {
        let exp_sign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{mantissa}e{exp_sign}{:02}", exp.abs())
    }
}

fn main() {
    // Not needed (a constructor hook serves workers before main runs); harmless, and the
    // counterpart of Python's `if __name__ == "__main__":`.
    ProcessPool::init();

    // Submit
    {
        let executor = ProcessPool::new(3).expect("process pool");
        let future1 = executor.submit(my_func, 10);
        let future2 = executor.submit(my_func, 20);
        let future3 = executor.submit(my_func, 30);
        println!("From future 1:  {}", py_repr(future1.result(None).unwrap()));
        println!("From future 2:  {}", py_repr(future2.result(None).unwrap()));
        // Optional callback
        future3.add_done_callback(|f| {
            println!(
                "From callback of future 3:  {}",
                py_repr(f.result(None).unwrap())
            );
        });
    } // leaving the block waits for the pool, as Python's `with`
    // Map
    let list_of_vals: Vec<u32> = [1, 2, 3].repeat(10);
    {
        let executor = ProcessPool::new(3).expect("process pool");
        let results: Vec<String> = executor
            .map(my_func, list_of_vals, 1)
            .map(py_repr)
            .collect();
        println!("Mapped results:  [{}]", results.join(", "));
    }
}
