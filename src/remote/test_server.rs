//! A stand-in server for the backends' tests.

use std::io::{BufRead, BufReader, Write};

/// A server on 127.0.0.1 that answers every request with `reply`: its URL
/// (`http://127.0.0.1:PORT`).
pub fn answering(reply: String) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            // The request's head; a PUT's body is left unread (the reply comes first).
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                line.clear();
            }
            let _ = reader.get_mut().write_all(reply.as_bytes());
        }
    });
    url
}
