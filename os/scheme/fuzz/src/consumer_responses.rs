//! A hostile provider: arbitrary bytes as the response to each call a consumer makes
//! (read, write, fstat, open, fsync, dup). The `Handle` must return an error or a value
//! consistent with what it asked for, never panic.

use std::os::unix::net::UnixDatagram;

use testudo_scheme::{handle_pair, Handle, Rights, MAX_MESSAGE};

/// One fuzz input: must return without panicking.
pub fn fuzz(data: &[u8]) {
    let Ok((ours, theirs)) = handle_pair() else {
        return;
    };
    let provider = UnixDatagram::from(theirs);
    let responses: Vec<Vec<u8>> = data
        .split(|b| *b == 0xA5)
        .take(8)
        .map(<[u8]>::to_vec)
        .collect();
    let count = responses.len();
    let answer = std::thread::spawn(move || {
        let mut request = vec![0u8; MAX_MESSAGE];
        for response in responses {
            if provider.recv(&mut request).is_err() || provider.send(&response).is_err() {
                break;
            }
        }
    });
    let handle = Handle::from_fd(ours);
    let mut buf = [0u8; 32];
    for call in 0..count {
        match call % 6 {
            0 => {
                if let Ok(n) = handle.read(&mut buf) {
                    assert!(n <= buf.len());
                }
            }
            1 => {
                if let Ok(n) = handle.write(b"hello") {
                    assert!(n <= 5);
                }
            }
            2 => {
                let _ = handle.fstat();
            }
            3 => {
                let _ = handle.open("x", Rights::Read);
            }
            4 => {
                let _ = handle.fsync();
            }
            _ => {
                let _ = handle.dup(Rights::Read);
            }
        }
    }
    drop(handle);
    answer.join().expect("provider thread");
}
