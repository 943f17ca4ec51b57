//! How many audit records per second the trail sustains, end to end: records submitted from
//! many tokio tasks, through the bounded queue, hashed into the SM3 chain and committed to
//! SQLite, until every record is durable. Then the time the sealer takes to build the heavy
//! indexes on the finished file.
//!
//! ```text
//! cargo bench -p warden-audit --bench throughput
//! AUDIT_BENCH_RECORDS=200000 AUDIT_BENCH_DURABILITY=normal AUDIT_BENCH_FULL_TEXT=0 \
//!     AUDIT_BENCH_KEY=1 cargo bench -p warden-audit --bench throughput
//! ```

use std::time::Instant;

use time::OffsetDateTime;
use warden_audit::{
    AuditConfig, AuditEvent, AuditRecord, AuditResult, AuditTrail, Durability, Protocol,
};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const TEMPLATES: [(&str, &str, &[&str], &[&str]); 6] = [
    (
        "select",
        "SELECT id, name, id_card, phone FROM public.members WHERE union_id = ? AND status = ? ORDER BY id LIMIT ?",
        &["public.members"],
        &[
            "members.id",
            "members.name",
            "members.id_card",
            "members.phone",
            "members.union_id",
            "members.status",
        ],
    ),
    (
        "insert",
        "INSERT INTO payments (member_id, amount, paid_at, channel) VALUES (?, ?, ?, ?)",
        &["payments"],
        &[
            "payments.member_id",
            "payments.amount",
            "payments.paid_at",
            "payments.channel",
        ],
    ),
    (
        "update",
        "UPDATE members SET phone = ?, updated_at = now() WHERE id = ?",
        &["members"],
        &["members.phone", "members.updated_at", "members.id"],
    ),
    (
        "select",
        "SELECT m.name, sum(p.amount) FROM members m JOIN payments p ON p.member_id = m.id WHERE p.paid_at >= ? GROUP BY m.name",
        &["members", "payments"],
        &[
            "members.name",
            "payments.amount",
            "payments.member_id",
            "members.id",
            "payments.paid_at",
        ],
    ),
    (
        "delete",
        "DELETE FROM sessions WHERE expires_at < ?",
        &["sessions"],
        &["sessions.expires_at"],
    ),
    (
        "select",
        "SELECT 社保编号, 姓名 FROM 参保人员 WHERE 单位编号 = ?",
        &["参保人员"],
        &["参保人员.社保编号", "参保人员.姓名", "参保人员.单位编号"],
    ),
];

fn record(task: u64, i: u64) -> AuditRecord {
    let (kind, sql, tables, columns) = TEMPLATES[(i % TEMPLATES.len() as u64) as usize];
    let mut r = AuditRecord::new(
        OffsetDateTime::now_utc(),
        AuditEvent::Statement,
        task * 1_000_000 + i / 50,
        "main",
        Protocol::Postgres,
        format!("app_user_{}", task % 7),
        "union",
        format!("10.20.{}.{}", task % 4, 10 + i % 200)
            .parse()
            .unwrap(),
        40_000 + (i % 20_000) as u16,
    );
    r.program = Some(["JDBC", "psql", "Navicat", "union-portal"][(i % 4) as usize].into());
    r.statement_kind = Some(kind.into());
    r.fingerprint = Some(format!(
        "{:016x}",
        (i % 6).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    ));
    r.sql = Some(sql.into());
    r.tables = tables.iter().map(|s| s.to_string()).collect();
    r.columns = columns.iter().map(|s| s.to_string()).collect();
    r.rows = Some(i % 100);
    r.latency_us = Some(200 + i % 5000);
    if i.is_multiple_of(97) {
        r.result = AuditResult::Error;
        r.error_code = Some("23505".into());
        r.message = Some("duplicate key value violates unique constraint \"members_pkey\"".into());
    }
    r
}

fn main() {
    let total: u64 = env_or("AUDIT_BENCH_RECORDS", 1_000_000);
    let tasks: u64 = env_or("AUDIT_BENCH_TASKS", 16);
    let durability = match std::env::var("AUDIT_BENCH_DURABILITY").as_deref() {
        Ok("normal") => Durability::Normal,
        _ => Durability::Full,
    };
    let full_text = env_or("AUDIT_BENCH_FULL_TEXT", 1u8) == 1;
    let keyed = env_or("AUDIT_BENCH_KEY", 1u8) == 1;
    let dir = tempfile::tempdir_in(env_or("AUDIT_BENCH_DIR", std::env::temp_dir()))
        .expect("temporary directory");
    let mut config = AuditConfig::with_dir(dir.path().join("audit"));
    config.durability = durability;
    config.full_text_index = full_text;
    config.batch_size = env_or("AUDIT_BENCH_BATCH", config.batch_size);
    config.queue_capacity = env_or("AUDIT_BENCH_QUEUE", config.queue_capacity);
    if keyed {
        let key = dir.path().join("audit.key");
        std::fs::write(&key, "5a".repeat(32)).unwrap();
        config.checkpoint_key_file = Some(key);
    }
    println!(
        "audit throughput: {total} records from {tasks} tasks, durability {durability:?}, \
         full-text {full_text}, checkpoints {keyed}, batch {} queue {}",
        config.batch_size, config.queue_capacity
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let (sink, writer) = AuditTrail::start(config).expect("start the trail");
        let started = Instant::now();
        let per_task = total / tasks;
        let mut handles = Vec::new();
        for t in 0..tasks {
            let sink = sink.clone();
            handles.push(tokio::spawn(async move {
                for i in 0..per_task {
                    sink.submit(record(t, i)).await.expect("accepted");
                }
            }));
        }
        for h in handles {
            h.await.unwrap();
        }
        let submitted_in = started.elapsed();
        let written = per_task * tasks;
        while sink.stats().written < written {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        let elapsed = started.elapsed();
        let writer_cpu = writer_cpu_seconds();
        let stats = sink.stats();
        drop(sink);
        writer.shutdown().await.expect("shutdown");
        println!(
            "submitted in {:.2}s; all durable in {:.2}s: {:.0} records/s",
            submitted_in.as_secs_f64(),
            elapsed.as_secs_f64(),
            written as f64 / elapsed.as_secs_f64()
        );
        if let Some(cpu) = writer_cpu {
            println!(
                "writer thread CPU {:.2}s: {:.0} records per writer CPU second \
                 (what one dedicated core sustains)",
                cpu,
                written as f64 / cpu
            );
        }
        println!(
            "batches {} (mean {:.1} ms, max {:.1} ms), submissions that waited on a full queue: {}",
            stats.batches,
            stats.batch_write_us_total as f64 / stats.batches.max(1) as f64 / 1000.0,
            stats.batch_write_us_max as f64 / 1000.0,
            stats.waited
        );
        // What the background sealer does after midnight, timed here on the whole file.
        let sealing = Instant::now();
        for f in warden_audit::store::list_day_files(&dir.path().join("audit")).unwrap() {
            warden_audit::store::seal_day_file(&f.path, full_text).expect("seal");
        }
        println!(
            "sealing (client IP, program, kind and table indexes{}): {:.2}s, {:.0} records/s",
            if full_text { ", full text" } else { "" },
            sealing.elapsed().as_secs_f64(),
            written as f64 / sealing.elapsed().as_secs_f64()
        );
        let size: u64 = std::fs::read_dir(dir.path().join("audit"))
            .unwrap()
            .filter_map(|e| e.ok()?.metadata().ok())
            .map(|m| m.len())
            .sum();
        println!(
            "store size {:.1} MB ({:.0} bytes/record)",
            size as f64 / 1e6,
            size as f64 / written as f64
        );
    });
}

/// CPU time the writer thread has used so far (Linux: /proc schedstat), in seconds.
fn writer_cpu_seconds() -> Option<f64> {
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let task = task.ok()?.path();
        let comm = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
        if comm.trim() == "warden-audit-wr" {
            let sched = std::fs::read_to_string(task.join("schedstat")).ok()?;
            let ns: f64 = sched.split_whitespace().next()?.parse().ok()?;
            return Some(ns / 1e9);
        }
    }
    None
}
