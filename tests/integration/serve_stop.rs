//! A stopping `airlock serve` (SIGTERM, as systemd stops it): replies under way finish, new
//! requests and the health check get 503 so a load balancer sends elsewhere, then it exits.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::api::{get, serve};

#[test]
fn sigterm_lets_the_reply_under_way_finish_and_refuses_new_requests() {
    // A drain limit no loaded test machine reaches: the reply must finish, not be cut off.
    let mut s = serve(&[("AIRLOCK_DRAIN_TIMEOUT", "600")], true);
    let body = r#"{"model":"gemma3:270m","prompt":"Tell a long story about a lighthouse.","options":{"num_predict":40,"temperature":0}}"#;
    let mut stream = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    write!(stream, "POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    while !line.contains("\"response\"") {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0, "the stream ended before its first piece");
    }
    // The reply is under way: stop the server as systemd does.
    assert!(Command::new("kill").args(["-TERM", &s.pid().to_string()]).status().unwrap().success());
    // The signal lands within moments (later on a loaded machine): from then on, 503.
    let deadline = Instant::now() + Duration::from_secs(30);
    let refused = loop {
        let (status, body) = get(s.port, "/api/tags", "");
        if status == 503 {
            break body;
        }
        assert!(status == 200 && Instant::now() < deadline, "a request after SIGTERM: {status} {body}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(refused.contains("shutting down"), "{refused}");
    assert_eq!(get(s.port, "/", "").0, 503, "the health check tells the load balancer");
    let mut rest = String::new();
    reader.read_to_string(&mut rest).unwrap();
    assert!(rest.contains(r#""done":true"#) && !rest.contains("error"), "the reply under way finishes: {rest}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = s.try_wait() {
            break status;
        }
        assert!(Instant::now() < deadline, "the server did not exit after its last reply");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    assert!(TcpStream::connect(("127.0.0.1", s.port)).is_err(), "nothing listens any more");
    let records = std::fs::read_to_string(s.audit_log()).unwrap();
    println!("{records}");
    let refusals: Vec<&str> = records.lines().filter(|l| l.contains(r#""status":503"#)).collect();
    assert!(refusals.len() >= 2 && refusals.iter().all(|l| l.contains("shutting down")), "the refusals are in the audit log: {refusals:?}");
    assert!(refusals.iter().any(|l| l.contains(r#""route":"/""#)), "{refusals:?}");
}
