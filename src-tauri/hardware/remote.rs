//! Devices on other machines: llama.cpp RPC workers (`airlock rpc-worker`, or llama.cpp's own
//! `rpc-server`) named by `AIRLOCK_RPC` or `serve --rpc`. They are asked here, in the calling
//! process, with three commands of llama.cpp's RPC protocol (HELLO, DEVICE_COUNT and
//! GET_DEVICE_MEMORY) and a timeout on every step: ggml's own client aborts its process when a
//! worker is missing, and a worker serves one client at a time, so a worker that is down or busy
//! with another head must cost seconds and a sentence, never a crash or a hang. Only workers that
//! answered are handed to a runner.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::GpuDevice;

/// Comma-separated `HOST:PORT` of RPC workers whose devices the engine may use.
pub const RPC_ENV: &str = "AIRLOCK_RPC";
/// The ggml backend name remote devices are listed under.
pub const RPC_BACKEND: &str = "RPC";

// From ggml-rpc.h / ggml-rpc.cpp of the llama.cpp this build links (protocol 7.0).
const PROTOCOL_MAJOR: u8 = 7;
const PROTOCOL_MINOR: u8 = 0;
const CMD_GET_DEVICE_MEMORY: u8 = 11;
const CMD_HELLO: u8 = 14;
const CMD_DEVICE_COUNT: u8 = 15;
const CONN_CAPS_SIZE: usize = 24;
/// ggml-rpc's GGML_RPC_MAX_SERVERS; also a bound on what a worker may claim to have.
const MAX_DEVICES: u32 = 16;

/// How long a worker may take to accept and to answer each command.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(3);

/// One worker as the last probe found it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpcWorker {
    /// `HOST:PORT` as configured.
    pub endpoint: String,
    /// Its devices, listed as GPUs of backend `RPC`; empty when it did not answer.
    pub devices: Vec<GpuDevice>,
    /// Why it is left out, in words; `None` when it answered.
    pub error: Option<String>,
}

impl RpcWorker {
    pub fn answered(&self) -> bool {
        self.error.is_none()
    }
}

/// The workers `AIRLOCK_RPC` names (empty when unset).
pub fn endpoints_from_env() -> Vec<String> {
    std::env::var(RPC_ENV)
        .map(|v| split_endpoints(&v))
        .unwrap_or_default()
}

/// `a:1, b:2` → `["a:1", "b:2"]`, without empty entries.
pub fn split_endpoints(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Checks that `endpoint` is `HOST:PORT` as llama.cpp's RPC client parses it (an IPv4 address
/// or a host name, then a port; no IPv6 literal).
pub fn check_endpoint(endpoint: &str) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "RPC worker {endpoint:?} is not HOST:PORT ({why}), e.g. 10.0.0.5:50052"
        ))
    };
    let Some((host, port)) = endpoint.rsplit_once(':') else {
        return bad("no port");
    };
    if host.is_empty() || host.contains([':', '[', ']', '/', ' ']) {
        return bad("the host must be an IPv4 address or a name");
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => bad("the port must be a number from 1 to 65535"),
    }
}

/// Asks every worker at once; the result keeps the order of `endpoints`.
pub fn probe(endpoints: &[String]) -> Vec<RpcWorker> {
    std::thread::scope(|s| {
        let asked: Vec<_> = endpoints
            .iter()
            .map(|e| s.spawn(move || probe_one(e)))
            .collect();
        asked
            .into_iter()
            .zip(endpoints)
            .map(|(h, e)| {
                h.join().unwrap_or_else(|_| RpcWorker {
                    endpoint: e.clone(),
                    devices: Vec::new(),
                    error: Some("the probe failed".into()),
                })
            })
            .collect()
    })
}

fn probe_one(endpoint: &str) -> RpcWorker {
    let (devices, error) = match check_endpoint(endpoint).and_then(|()| ask(endpoint)) {
        Ok(devices) => (devices, None),
        Err(e) => (Vec::new(), Some(e)),
    };
    RpcWorker {
        endpoint: endpoint.to_string(),
        devices,
        error,
    }
}

/// HELLO, then the device count and each device's memory.
fn ask(endpoint: &str) -> Result<Vec<GpuDevice>, String> {
    let addr = endpoint
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {endpoint}: {e}"))?
        .next()
        .ok_or_else(|| format!("{endpoint} resolves to no address"))?;
    let mut conn =
        TcpStream::connect_timeout(&addr, ANSWER_TIMEOUT).map_err(|e| match e.kind() {
            std::io::ErrorKind::ConnectionRefused => {
                format!("nothing listens on {endpoint} (is `airlock rpc-worker` running there?)")
            }
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => format!(
                "{endpoint} did not accept a connection within {} s",
                ANSWER_TIMEOUT.as_secs()
            ),
            _ => format!("cannot connect to {endpoint}: {e}"),
        })?;
    let setup = conn
        .set_read_timeout(Some(ANSWER_TIMEOUT))
        .and(conn.set_write_timeout(Some(ANSWER_TIMEOUT)))
        .and(conn.set_nodelay(true));
    setup.map_err(|e| format!("cannot talk to {endpoint}: {e}"))?;
    let silent = |e: std::io::Error| {
        match e.kind() {
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => format!(
            "{endpoint} did not answer within {} s: it is busy serving another head (a worker serves one at a time) or it is not an RPC worker",
            ANSWER_TIMEOUT.as_secs()
        ),
        _ => format!("{endpoint} closed the connection ({e}): is it an RPC worker of this llama.cpp version?"),
    }
    };

    let hello = command(
        &mut conn,
        CMD_HELLO,
        &[0; CONN_CAPS_SIZE],
        4 + CONN_CAPS_SIZE,
    )
    .map_err(silent)?;
    let (major, minor, patch) = (hello[0], hello[1], hello[2]);
    if major != PROTOCOL_MAJOR || minor > PROTOCOL_MINOR {
        return Err(format!(
            "{endpoint} speaks RPC protocol {major}.{minor}.{patch}, this build {PROTOCOL_MAJOR}.{PROTOCOL_MINOR}: run the same Airlock version on the workers and the head"
        ));
    }
    let count = command(&mut conn, CMD_DEVICE_COUNT, &[], 4).map_err(silent)?;
    let count = u32::from_le_bytes(count.try_into().expect("4 bytes"));
    if count == 0 || count > MAX_DEVICES {
        return Err(format!("{endpoint} claims {count} devices"));
    }
    (0..count)
        .map(|i| {
            let memory =
                command(&mut conn, CMD_GET_DEVICE_MEMORY, &i.to_le_bytes(), 16).map_err(silent)?;
            let free = u64::from_le_bytes(memory[..8].try_into().expect("8 bytes"));
            let total = u64::from_le_bytes(memory[8..].try_into().expect("8 bytes"));
            Ok(GpuDevice {
                name: format!("device {i} of RPC worker {endpoint}"),
                // The name llama.cpp gives this device's buffers, so placement lines up with it.
                device: device_name(i, endpoint),
                backend: RPC_BACKEND.into(),
                memory_total_bytes: total,
                memory_free_bytes: free.min(total),
                driver: None,
            })
        })
        .collect()
}

/// What llama.cpp calls device `index` of the worker at `endpoint` in its buffers' names.
pub fn device_name(index: u32, endpoint: &str) -> String {
    format!("{RPC_BACKEND}{index}[{endpoint}]")
}

/// One request (`cmd`, its size as u64, the bytes) and its answer, which must be `answer_size`
/// bytes long.
fn command(
    conn: &mut TcpStream,
    cmd: u8,
    input: &[u8],
    answer_size: usize,
) -> std::io::Result<Vec<u8>> {
    let mut request = Vec::with_capacity(9 + input.len());
    request.push(cmd);
    request.extend_from_slice(&(input.len() as u64).to_le_bytes());
    request.extend_from_slice(input);
    conn.write_all(&request)?;
    let mut size = [0u8; 8];
    conn.read_exact(&mut size)?;
    if u64::from_le_bytes(size) != answer_size as u64 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "an answer of {} bytes where {answer_size} were expected",
                u64::from_le_bytes(size)
            ),
        ));
    }
    let mut answer = vec![0u8; answer_size];
    conn.read_exact(&mut answer)?;
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn endpoints_are_host_and_port() {
        assert_eq!(
            split_endpoints(" 10.0.0.5:50052, ,gpu2:50052,"),
            ["10.0.0.5:50052", "gpu2:50052"]
        );
        assert!(check_endpoint("10.0.0.5:50052").is_ok() && check_endpoint("gpu-2.site:1").is_ok());
        for bad in [
            "10.0.0.5",
            ":50052",
            "host:0",
            "host:65536",
            "host:x",
            "[::1]:50052",
            "::1:50052",
            "a b:1",
        ] {
            let e = check_endpoint(bad).unwrap_err();
            assert!(e.contains("is not HOST:PORT"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_missing_worker_and_a_bad_entry_are_left_out_with_reasons() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let found = probe(&[format!("127.0.0.1:{port}"), "nonsense".into()]);
        assert!(
            found[0].error.as_ref().unwrap().contains("nothing listens"),
            "{found:?}"
        );
        assert!(
            found[1]
                .error
                .as_ref()
                .unwrap()
                .contains("is not HOST:PORT"),
            "{found:?}"
        );
        assert!(found.iter().all(|w| !w.answered() && w.devices.is_empty()));
    }

    #[test]
    fn a_silent_worker_costs_the_timeout_not_a_hang() {
        // Accepts (the kernel's backlog does) but never answers, like a worker busy with another head.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = listener.local_addr().unwrap().to_string();
        let found = probe(std::slice::from_ref(&endpoint));
        assert!(
            found[0].error.as_ref().unwrap().contains("did not answer"),
            "{found:?}"
        );
    }

    #[test]
    fn a_worker_is_read_as_the_protocol_says() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = listener.local_addr().unwrap().to_string();
        let worker = std::thread::spawn(move || {
            let (mut c, _) = listener.accept().unwrap();
            let read = |c: &mut TcpStream, n: usize| {
                let mut b = vec![0u8; n];
                c.read_exact(&mut b).unwrap();
                b
            };
            let hello = read(&mut c, 9);
            assert_eq!(
                (hello[0], u64::from_le_bytes(hello[1..].try_into().unwrap())),
                (CMD_HELLO, CONN_CAPS_SIZE as u64)
            );
            read(&mut c, CONN_CAPS_SIZE);
            let mut answers = Vec::new();
            answers.extend_from_slice(&28u64.to_le_bytes());
            answers.extend_from_slice(&[7, 0, 0, 0]);
            answers.extend_from_slice(&[0; CONN_CAPS_SIZE]);
            c.write_all(&answers).unwrap();
            assert_eq!(read(&mut c, 9)[0], CMD_DEVICE_COUNT);
            c.write_all(&[&4u64.to_le_bytes()[..], &1u32.to_le_bytes()].concat())
                .unwrap();
            let ask = read(&mut c, 13);
            assert_eq!(
                (ask[0], &ask[9..]),
                (CMD_GET_DEVICE_MEMORY, &0u32.to_le_bytes()[..])
            );
            c.write_all(
                &[
                    &16u64.to_le_bytes()[..],
                    &(3u64 << 30).to_le_bytes(),
                    &(8u64 << 30).to_le_bytes(),
                ]
                .concat(),
            )
            .unwrap();
        });
        let found = probe(std::slice::from_ref(&endpoint));
        worker.join().unwrap();
        assert_eq!(found[0].error, None);
        let d = &found[0].devices[0];
        assert_eq!(
            (
                d.device.as_str(),
                d.backend.as_str(),
                d.memory_free_bytes,
                d.memory_total_bytes
            ),
            (
                format!("RPC0[{endpoint}]").as_str(),
                "RPC",
                3 << 30,
                8 << 30
            )
        );
    }
}
