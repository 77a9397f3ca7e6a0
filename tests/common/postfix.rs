//! A throwaway Postfix (Debian's `postfix`) on 127.0.0.1: its own config, queue and data directories in a
//! tempdir, smtpd on a free port with STARTTLS (the test CA's certificate), virtual delivery of one domain to
//! Maildirs in the tempdir. Stopped when dropped, also when the test fails.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Where the tools are, or why the test cannot run.
pub fn binaries() -> Result<(PathBuf, PathBuf), String> {
    let find = |tool: &str| {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
    };
    // A throwaway Postfix hands its queue to the postfix user: only root can set that up.
    let uid = Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    if uid.as_deref().ok() != Some("0") {
        return Err("a throwaway postfix needs root (chown of its queue to the postfix user)".into());
    }
    match (find("postfix"), find("msmtp")) {
        (Some(p), Some(m)) => Ok((p, m)),
        (p, m) => Err(format!(
            "missing {}: install Debian's postfix and msmtp (scripts/test does)",
            [p.is_none().then_some("postfix"), m.is_none().then_some("msmtp")]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" and ")
        )),
    }
}

pub struct Postfix {
    pub addr: SocketAddr,
    pub dir: PathBuf,
    postfix: PathBuf,
}

/// The domain Postfix delivers locally; mailboxes are made per address by `Postfix::start`.
pub const DOMAIN: &str = "inbox.example.org";

impl Postfix {
    /// Starts Postfix in `dir` (which holds server.pem/server.key), delivering mail for `users@DOMAIN`.
    pub fn start(postfix: &Path, dir: &Path, users: &[&str]) -> Postfix {
        let port = super::prom::free_port();
        let d = dir.display();
        for sub in ["etc", "queue", "data", "mail"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let chmod = |p: &Path, mode: u32| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        // Postfix's daemons run as the postfix user (and deliver as nobody): they must reach their files.
        chmod(dir, 0o755);
        chmod(&dir.join("mail"), 0o777);
        chmod(&dir.join("server.key"), 0o644);
        let ok = Command::new("chown").arg("postfix").arg(dir.join("data")).status().unwrap();
        assert!(ok.success(), "chown postfix (is Debian's postfix package installed, with its user?)");
        std::fs::write(
            dir.join("etc/main.cf"),
            format!(
                "compatibility_level = 3.6\nqueue_directory = {d}/queue\ndata_directory = {d}/data\n\
                 mail_owner = postfix\nsetgid_group = postdrop\nmyhostname = mx.test.example\n\
                 inet_interfaces = 127.0.0.1\ninet_protocols = ipv4\nmydestination =\nmynetworks = 127.0.0.0/8\n\
                 relay_domains =\nvirtual_mailbox_domains = {DOMAIN}\nvirtual_mailbox_base = {d}/mail\n\
                 virtual_mailbox_maps = texthash:{d}/etc/vmailbox\nvirtual_uid_maps = static:65534\n\
                 virtual_gid_maps = static:65534\nvirtual_minimum_uid = 100\n\
                 smtpd_tls_cert_file = {d}/server.pem\nsmtpd_tls_key_file = {d}/server.key\n\
                 smtpd_tls_security_level = may\n\
                 smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\n\
                 maillog_file = {d}/maillog\nmaillog_file_prefixes = {d}\nalias_maps =\nalias_database =\n\
                 smtputf8_enable = no\nbiff = no\n"
            ),
        )
        .unwrap();
        let mailboxes: String = users.iter().map(|u| format!("{u}@{DOMAIN} {u}/\n")).collect();
        std::fs::write(dir.join("etc/vmailbox"), mailboxes).unwrap();
        let services = [
            "pickup unix n - n 60 1 pickup",
            "cleanup unix n - n - 0 cleanup",
            "qmgr unix n - n 300 1 qmgr",
            "tlsmgr unix - - n 1000? 1 tlsmgr",
            "rewrite unix - - n - - trivial-rewrite",
            "bounce unix - - n - 0 bounce",
            "defer unix - - n - 0 bounce",
            "trace unix - - n - 0 bounce",
            "verify unix - - n - 1 verify",
            "flush unix n - n 1000? 0 flush",
            "proxymap unix - - n - - proxymap",
            "smtp unix - - n - - smtp",
            "relay unix - - n - - smtp",
            "error unix - - n - - error",
            "retry unix - - n - - error",
            "discard unix - - n - - discard",
            "local unix - n n - - local",
            "virtual unix - n n - - virtual",
            "anvil unix - - n - 1 anvil",
            "scache unix - - n - 1 scache",
            "postlog unix-dgram n - n - 1 postlogd",
            "showq unix n - n - - showq",
        ];
        let master = format!("127.0.0.1:{port} inet n - n - - smtpd\n{}\n", services.join("\n"));
        std::fs::write(dir.join("etc/master.cf"), master).unwrap();
        let pf =
            Postfix { addr: SocketAddr::from(([127, 0, 0, 1], port)), dir: dir.to_path_buf(), postfix: postfix.into() };
        let out = Command::new(postfix).arg("-c").arg(dir.join("etc")).arg("start").output().unwrap();
        assert!(out.status.success(), "postfix start failed: {}\n{}", String::from_utf8_lossy(&out.stderr), pf.log());
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(pf.addr).is_err() {
            assert!(Instant::now() < deadline, "postfix did not listen:\n{}", pf.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        pf
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("maillog")).unwrap_or_default()
    }

    /// The messages delivered to `user`'s Maildir (new/), waiting up to 20 s for `count` of them.
    pub fn wait_for(&self, user: &str, count: usize) -> Vec<Vec<u8>> {
        let new = self.dir.join("mail").join(user).join("new");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&new)
                .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
                .unwrap_or_default();
            if files.len() >= count || Instant::now() > deadline {
                files.sort();
                return files.iter().map(|f| std::fs::read(f).unwrap()).collect();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Every file in every Maildir.
    pub fn all_delivered(&self) -> usize {
        let mut n = 0;
        for user in std::fs::read_dir(self.dir.join("mail")).into_iter().flatten().flatten() {
            for sub in ["new", "cur"] {
                n += std::fs::read_dir(user.path().join(sub)).map(|d| d.count()).unwrap_or(0);
            }
        }
        n
    }
}

impl Drop for Postfix {
    /// `postfix stop`, then the master process killed if it is still there after 10 s.
    fn drop(&mut self) {
        let pid = std::fs::read_to_string(self.dir.join("queue/pid/master.pid")).unwrap_or_default();
        let pid = pid.trim().to_owned();
        let _ = Command::new(&self.postfix).arg("-c").arg(self.dir.join("etc")).arg("stop").output();
        if pid.is_empty() {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        if Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
        }
    }
}

/// Sends `message` with msmtp to veil's listener at `addr` (STARTTLS with `ca`, AUTH PLAIN as `user`).
pub fn msmtp(
    msmtp: &Path,
    dir: &Path,
    addr: SocketAddr,
    auth: Option<(&str, &str)>,
    from: &str,
    to: &[&str],
    message: &[u8],
) -> (bool, String) {
    use std::io::Write;
    let conf = dir.join("msmtprc");
    let mut text = format!(
        "account default\nhost 127.0.0.1\nport {}\nfrom {from}\ntimeout 30\nlogfile {}\n",
        addr.port(),
        dir.join("msmtp.log").display()
    );
    match auth {
        Some((user, password)) => text.push_str(&format!(
            "tls on\ntls_starttls on\ntls_trust_file {}\ntls_host_override localhost\nauth plain\nuser {user}\n\
             password {password}\n",
            dir.join("ca.pem").display()
        )),
        None => text.push_str("tls off\nauth off\n"),
    }
    std::fs::write(&conf, text).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let mut child = Command::new(msmtp)
        .arg("-C")
        .arg(&conf)
        .args(to)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(message).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}
