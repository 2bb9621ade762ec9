//! [`PrivatePostgres`]: a throwaway PostgreSQL cluster for fault tests,
//! in its own temp dir on a spare port, so a test can crash and restart it
//! without touching the shared server.
//!
//! `initdb` and `postgres` refuse to run as root; when the tests run as root
//! the server runs as the `postgres` OS user (`runuser`) and its directory
//! is handed to that user. Authentication is `trust` and the server listens
//! on 127.0.0.1 only, with its unix socket inside the temp dir. `fsync`
//! stays on: the fault tests check that acknowledged writes survive a crash.
//! Only `initdb` skips its own fsyncs, which cost seconds and protect
//! nothing a test needs.

use crate::spare_port;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use tempfile::TempDir;

/// A PostgreSQL cluster owned by one test: stopped (through `pg_ctl` on its
/// own data dir, so never any other server) and deleted when dropped.
pub struct PrivatePostgres {
    bin: PathBuf,
    port: u16,
    /// Wrap every server command in `runuser -u postgres --`.
    as_postgres_user: bool,
    dir: TempDir,
}

impl PrivatePostgres {
    /// Creates and starts a cluster, or `None` (after printing why the test
    /// is skipped) when PostgreSQL's server binaries are not installed. Any
    /// other failure panics with the server's log: the binaries are there,
    /// so the environment is broken, not missing.
    ///
    /// Blocking (about two seconds, mostly `initdb`).
    pub fn start() -> Option<PrivatePostgres> {
        let Some(bin) = server_bin_dir() else {
            eprintln!(
                "skipped: no PostgreSQL server binaries (initdb, pg_ctl) found via pg_config or /usr/lib/postgresql"
            );
            return None;
        };
        let as_postgres_user = running_as_root();
        if as_postgres_user && !Command::new("id").args(["-u", "postgres"]).output().is_ok_and(|o| o.status.success()) {
            eprintln!("skipped: running as root and there is no `postgres` OS user to run the server as");
            return None;
        }
        let dir = tempfile::Builder::new().prefix("wafer-pg-").tempdir().expect("temp dir for PostgreSQL");
        std::fs::create_dir(dir.path().join("socket")).expect("socket dir");
        if as_postgres_user {
            run(Command::new("chown").arg("-R").arg("postgres:postgres").arg(dir.path()), "chown");
        }
        let mut pg = PrivatePostgres { bin, port: 0, as_postgres_user, dir };
        let mut initdb = pg.command("initdb");
        initdb.arg("-D").arg(pg.data_dir()).args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C"]);
        initdb.arg("--no-sync");
        pg.check(&mut initdb, "initdb");
        // A spare port can be taken between choosing and binding it; try a
        // few before calling the environment broken.
        for attempt in 1..=3 {
            pg.port = spare_port();
            match pg.try_start() {
                Ok(()) => return Some(pg),
                Err(e) if attempt == 3 => panic!("{e}"),
                Err(_) => {}
            }
        }
        unreachable!()
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `pg_ctl stop -m immediate`: every server process quits at once
    /// without a checkpoint, as in a crash; the next start runs recovery
    /// from the WAL. Blocking, well under a second.
    pub fn stop_immediate(&self) {
        let mut stop = self.pg_ctl("stop");
        stop.args(["-m", "immediate", "-w"]);
        self.check(&mut stop, "pg_ctl stop -m immediate");
    }

    /// Starts the stopped cluster again on the same port (so the URL other
    /// clients hold stays valid). Blocking until it accepts connections,
    /// including crash recovery.
    pub fn start_again(&self) {
        if let Err(e) = self.try_start() {
            panic!("{e}");
        }
    }

    fn try_start(&self) -> Result<(), String> {
        let socket = self.dir.path().join("socket");
        let options = format!("-c listen_addresses=127.0.0.1 -p {} -k {}", self.port, socket.display());
        let mut start = self.pg_ctl("start");
        start.args(["-w", "-t", "60", "-o", &options, "-l"]).arg(self.log_path());
        let out = output(&mut start, "pg_ctl start");
        if out.status.success() { Ok(()) } else { Err(self.failure("pg_ctl start", &out)) }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// `pg_ctl <action> -D <our data dir>`.
    fn pg_ctl(&self, action: &str) -> Command {
        let mut cmd = self.command("pg_ctl");
        cmd.arg(action).arg("-D").arg(self.data_dir());
        cmd
    }

    /// One of the cluster's binaries, run as the `postgres` user if needed.
    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        let mut cmd = if self.as_postgres_user {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(program);
            cmd
        } else {
            Command::new(program)
        };
        // The postgres user may not be able to enter the test's directory.
        cmd.current_dir(self.dir.path());
        cmd
    }

    fn check(&self, cmd: &mut Command, what: &str) {
        let out = output(cmd, what);
        if !out.status.success() {
            panic!("{}", self.failure(what, &out));
        }
    }

    fn failure(&self, what: &str, out: &Output) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        format!(
            "{what} failed ({}):\n{}{}\nserver log:\n{log}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        // Only our own data dir's postmaster is signalled; a cluster that is
        // already stopped just makes pg_ctl say so. Then the temp dir goes.
        if self.data_dir().join("postmaster.pid").exists() {
            let mut stop = self.pg_ctl("stop");
            stop.args(["-m", "immediate", "-w"]).stdout(Stdio::null()).stderr(Stdio::null());
            if !stop.status().is_ok_and(|s| s.success()) {
                eprintln!("could not stop the private PostgreSQL in {}", self.dir.path().display());
            }
        }
    }
}

/// The directory holding `initdb` and `pg_ctl`: `pg_config --bindir`, else
/// the newest `/usr/lib/postgresql/<version>/bin` (Debian does not put the
/// server binaries on PATH).
fn server_bin_dir() -> Option<PathBuf> {
    let has_server = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_server(&dir) {
            return Some(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let version = e.file_name().to_str()?.parse().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, dir)| has_server(dir))
        .collect();
    versions.sort();
    versions.pop().map(|(_, dir)| dir)
}

fn running_as_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn output(cmd: &mut Command, what: &str) -> Output {
    cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("running {what}: {e}"))
}

fn run(cmd: &mut Command, what: &str) {
    let out = output(cmd, what);
    assert!(out.status.success(), "{what} failed: {}", String::from_utf8_lossy(&out.stderr));
}
