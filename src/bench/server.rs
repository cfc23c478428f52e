//! Figures 5 to 7: server mode (`certadm-emu serve`) against bare loopback TCP, against
//! in-process, and with 32 clients at once.

use super::work::{self, Result, READ_SIZE};
use super::{build_ca, exactly, gibs, ns, per_iteration, throughput, Plan, Row};
use crate::abi::call::WStr;
use crate::config::Config;
use crate::core::consts::CSBACKUP_TYPE_FULL;
use crate::remote::client::RemoteClient;
use crate::remote::server::{RunningServer, Server, ServerOptions};
use crate::EmulatedCa;
use indicatif::HumanBytes;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// Figure 6's emulator side: a whole full-backup session of `machine` through the server
/// (Prepare, GetDatabaseNames, OpenFile, Read to end of file, Close, End); the bytes read.
fn remote_full_backup(client: &RemoteClient, machine: &str, buf: &mut [u8]) -> Result<u64> {
    let err = |e: crate::remote::client::RemoteError| e.to_string();
    let h = client
        .backup_prepare(machine, 0, CSBACKUP_TYPE_FULL)
        .map_err(err)?;
    let name = client
        .backup_get_database_names(h)
        .map_err(err)?
        .entries(true)[0]
        .path
        .clone();
    let size = client.backup_open_file(h, &name, 0).map_err(err)?;
    let mut got = 0u64;
    loop {
        let n = client.backup_read(h, buf).map_err(err)?;
        got += n as u64;
        if n < buf.len() {
            break;
        }
    }
    client.backup_close(h).map_err(err)?;
    client.backup_end(h).map_err(err)?;
    exactly("the remote backup", got, size)
}

fn start_server(config: &str) -> Result<RunningServer> {
    let config = Config::from_json(config)?;
    let server = Server::bind(
        "127.0.0.1:0",
        ServerOptions {
            secret: None,
            config: Some(config),
            quiet: true,
        },
    )
    .map_err(|e| format!("starting the server: {e}"))?;
    Ok(server.spawn())
}

/// A bare TCP echo peer on loopback: each request is a u32 length and that many bytes;
/// the reply is `reply` bytes. Returns its address.
fn echo_peer(reply: usize) -> Result<String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = l.local_addr().map_err(|e| e.to_string())?.to_string();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = l.accept() {
            let _ = s.set_nodelay(true);
            let out = vec![7u8; reply];
            let mut len = [0u8; 4];
            let mut buf = vec![0u8; 1 << 16];
            while s.read_exact(&mut len).is_ok() {
                let n = u32::from_le_bytes(len) as usize;
                if n > buf.len() || s.read_exact(&mut buf[..n]).is_err() {
                    break;
                }
                let mut msg = (reply as u32).to_le_bytes().to_vec();
                msg.extend_from_slice(&out);
                if s.write_all(&msg).is_err() {
                    break;
                }
            }
        }
    });
    Ok(addr)
}

/// Figures 5–7: the server against bare loopback TCP, against in-process, and with 32
/// clients at once.
pub(super) fn figures(plan: &Plan) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let err = |e: crate::remote::client::RemoteError| e.to_string();

    // 5. Prepare+End through the server vs two bare request/response round trips of
    //    about the same size (a 64-byte request and a 32-byte reply each).
    let srv = start_server(r#"{"machines": [{"name": "BENCH5"}]}"#)?;
    let client = RemoteClient::connect(srv.addr(), None).map_err(err)?;
    let mut emu = |n: u64| -> Result<Duration> {
        let t = Instant::now();
        for _ in 0..n {
            let h = client
                .backup_prepare("BENCH5", 0, CSBACKUP_TYPE_FULL)
                .map_err(err)?;
            client.backup_end(h).map_err(err)?;
        }
        Ok(t.elapsed())
    };
    let peer = echo_peer(32)?;
    let mut sock = std::net::TcpStream::connect(&peer).map_err(|e| e.to_string())?;
    sock.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut req = 60u32.to_le_bytes().to_vec();
    req.extend_from_slice(&[1u8; 60]);
    let mut reply = [0u8; 36];
    let mut base = |n: u64| -> Result<Duration> {
        let t = Instant::now();
        for _ in 0..2 * n {
            sock.write_all(&req).map_err(|e| e.to_string())?;
            sock.read_exact(&mut reply).map_err(|e| e.to_string())?;
        }
        Ok(t.elapsed())
    };
    let (e, b) = per_iteration(plan, &mut emu, &mut base)?;
    rows.push(Row {
        figure: "5  server: Prepare+End vs 2 bare TCP round trips".into(),
        emulator: format!("{}/pair", ns(e)),
        baseline: format!("{}/pair", ns(b)),
        ratio: e / b,
        target: "<= 2x".into(),
        pass: Some(e / b <= 2.0),
    });
    drop(client);
    srv.stop().map_err(|e| e.to_string())?;

    // 6. A full backup of the .edb with 512 KiB reads through the server vs in-process.
    let srv = start_server(&format!(
        r#"{{"machines": [{{"name": "BENCH6", "ca": {{"edb_size": {}}}}}]}}"#,
        plan.edb
    ))?;
    let client = RemoteClient::connect(srv.addr(), None).map_err(err)?;
    let local = build_ca(EmulatedCa::builder().edb_size(plan.edb), "the CA")?;
    let wlocal = WStr::new(local.server_name());
    let mut buf = vec![0u8; READ_SIZE];
    let (e, b) = throughput(
        plan,
        &mut buf,
        &mut |buf| remote_full_backup(&client, "BENCH6", buf),
        &mut |buf| work::full_backup(&wlocal, buf),
    )?;
    rows.push(Row {
        figure: format!("6  server: {} backup vs in-process", HumanBytes(plan.edb)),
        emulator: gibs(e),
        baseline: gibs(b),
        ratio: e / b,
        target: ">= 0.5x".into(),
        pass: Some(e / b >= 0.5),
    });
    drop(client);
    srv.stop().map_err(|e| e.to_string())?;

    // 7. 32 clients, each with its own CA, vs one client: aggregate calls per second.
    let machines: Vec<String> = (0..32).map(|i| format!("BENCH7N{i:02}")).collect();
    let config = format!(
        r#"{{"machines": [{}]}}"#,
        machines
            .iter()
            .map(|m| format!(r#"{{"name": "{m}"}}"#))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let srv = start_server(&config)?;
    let addr = srv.addr().to_string();
    let window = plan.round_time * 2;
    let rate = |clients: usize| -> Result<f64> {
        let handles: Vec<_> = machines[..clients]
            .iter()
            .cloned()
            .map(|m| {
                let addr = addr.clone();
                std::thread::spawn(move || -> Result<u64> {
                    let c = RemoteClient::connect(&addr, None).map_err(|e| e.to_string())?;
                    let t = Instant::now();
                    let mut calls = 0u64;
                    while t.elapsed() < window {
                        c.is_server_online(&m).map_err(|e| e.to_string())?;
                        calls += 1;
                    }
                    Ok(calls)
                })
            })
            .collect();
        let mut total = 0u64;
        for h in handles {
            total += h
                .join()
                .map_err(|_| "a client thread panicked".to_string())??;
        }
        Ok(total as f64 / window.as_secs_f64())
    };
    let one = rate(1)?;
    let many = rate(32)?;
    rows.push(Row {
        figure: "7  server: 32 clients vs 1 (calls/s, scaling)".into(),
        emulator: format!("{:.0}/s", many),
        baseline: format!("{:.0}/s", one),
        ratio: many / one,
        target: "report".into(),
        pass: None,
    });
    srv.stop().map_err(|e| e.to_string())?;
    Ok(rows)
}
