//! Fuzzes the RESP (Redis protocol) parser, `driftkv_server::resp::parse`, as a connection
//! drives it: commands are taken from the front of the buffer until it is incomplete or broken.
//!
//! Checked: no panic; every command consumes at least one byte and no more than the buffer
//! holds; and a strict prefix of a command never parses as a command (a server reading the
//! same bytes in smaller pieces must not act on half of one). The input is the raw byte
//! stream, parsed with the server's own argument limit and once more with a tiny one.
#![no_main]

use std::sync::OnceLock;

use driftkv_server::resp::{Parsed, parse};
use libfuzzer_sys::fuzz_target;

/// The limit the server uses: `max(value_bytes_max, key_bytes_max) + 1024` at the defaults.
fn server_bulk_max() -> usize {
    static MAX: OnceLock<usize> = OnceLock::new();
    *MAX.get_or_init(|| {
        let cfg = driftkv_core::NodeConfig::new("fuzz");
        cfg.value_bytes_max.max(cfg.key_bytes_max) + 1024
    })
}

/// Parses `stream` command after command, checking each step.
fn drive(stream: &[u8], bulk_max: usize) {
    let mut rest = stream;
    // Each command consumes a byte at least, so this ends; the bound is a second guard.
    for _ in 0..=stream.len() {
        match parse(rest, bulk_max) {
            Parsed::Command(args, used) => {
                assert!(used > 0, "a command consumed no bytes: {args:?}");
                assert!(
                    used <= rest.len(),
                    "a command claims {used} bytes of a buffer of {}",
                    rest.len()
                );
                let taken: usize = args.iter().map(|a| a.len()).sum();
                assert!(
                    taken <= used,
                    "arguments hold more bytes than were consumed"
                );
                // Fed fewer bytes, the parser may wait or refuse, never complete a command.
                for cut in [used - 1, used / 2] {
                    if let Parsed::Command(early, n) = parse(&rest[..cut], bulk_max) {
                        panic!(
                            "{cut} of the {used} bytes of a command parse as a command of \
                             {n} bytes: {early:?}, the whole one is {args:?}"
                        );
                    }
                }
                rest = &rest[used..];
            }
            Parsed::Incomplete | Parsed::Broken(_) => return,
        }
    }
    panic!("the parser did not stop");
}

fuzz_target!(|data: &[u8]| {
    drive(data, server_bulk_max());
    drive(data, 8);
});
