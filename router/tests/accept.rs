#![allow(clippy::unwrap_used)] // test fixtures: a failed setup should fail loudly
//! A router out of file descriptors (operations.md, "Ports": a listener "backs off,
//! doubling up to a second, when accepting fails ... so idle or half-open sockets can
//! neither lock clients out nor spin a core").

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use crate::logged::{config_file, Logged};

/// CPU time the process has used, in clock ticks (utime + stime of /proc/PID/stat).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Scenario: a router started with 48 file descriptors (`ulimit -n`), one worker thread,
/// receives 80 connections that send nothing, so `accept` fails with EMFILE while they
/// stay open; then they close.
/// Guarantees: the router warns that it backs off and uses under a fifth of a core while
/// the descriptors are exhausted (a loop retrying `accept` at once takes a whole core),
/// and once the connections close it serves a request again: the listener was not lost.
#[test]
fn out_of_descriptors_the_accept_loop_backs_off_and_recovers() {
    let (dir, config) = config_file(
        "accept",
        "receive: { grpc: null, http: '127.0.0.63:0', request_timeout: 60s }\nmembers: { static: ['127.0.0.64:4317'] }\nadmin: null\nmetrics: null\n",
    );
    let mut router = Logged::spawn(
        Command::new("bash")
            .args(["-c", "ulimit -n 48 && exec \"$0\" --config \"$1\""])
            .arg(env!("CARGO_BIN_EXE_tailgate-router"))
            .arg(&config)
            .env("TOKIO_WORKER_THREADS", "1"),
    );
    let listening = router.wait_for("Router listening");
    let addr: SocketAddr = listening
        .split("http=Some(")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap()
        .parse()
        .unwrap();
    let pid = router.child.id();

    let idle: Vec<TcpStream> = (0..80)
        .map(|_| TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap())
        .collect();
    router.wait_for("Accepting a connection failed; backing off.");
    let before = cpu_ticks(pid);
    let window = Duration::from_secs(2);
    std::thread::sleep(window);
    let used = cpu_ticks(pid) - before;
    // 100 ticks a second on Linux: a spinning loop uses about 200 here.
    assert!(
        used < 40,
        "{used} ticks of CPU in {window:?} while out of descriptors"
    );
    assert!(
        router.child.try_wait().unwrap().is_none(),
        "the router ended"
    );

    drop(idle);
    // The connections it took see EOF and close; the ones in the backlog are accepted and
    // closed in turn; then a request is answered (405: OTLP/HTTP takes POST).
    let mut attempts = 0;
    let answered = loop {
        attempts += 1;
        assert!(attempts <= 40, "no answer after the connections closed");
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s.write_all(b"GET /v1/traces HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        if s.read_to_string(&mut answer).is_ok() && !answer.is_empty() {
            break answer;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(answered.starts_with("HTTP/1.1 405"), "{answered}");
    router.child.kill().unwrap();
    router.child.wait().unwrap();
    std::fs::remove_dir_all(&dir).ok();
}
