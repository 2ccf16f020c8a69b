//! The device's command interpreter, driven directly (no network): command output,
//! exit statuses, permission checks and the profile differences it exposes.

use proofrig_simlab::{DeviceConfig, DeviceIdentity, DeviceOs, LoginOrigin, Profile};

fn device(profile: Profile) -> DeviceOs {
    DeviceOs::new(
        DeviceConfig::new("ru1", profile, "R00t-Secret-Pass")
            .with_identity(DeviceIdentity {
                vendor: "Acme Radio".into(),
                model: "RU-4400".into(),
                serial: "ACME123456".into(),
                firmware: "4.2.1".into(),
            })
            .with_account("oper", "Op3rator-Passw0rd"),
    )
}

async fn run(os: &DeviceOs, user: &str, line: &str) -> (String, String, u8) {
    let out = os.run(user, line, "").await;
    (out.stdout, out.stderr, out.status)
}

#[tokio::test]
async fn identity_commands() {
    let os = device(Profile::Hardened);
    assert_eq!(run(&os, "root", "whoami").await, ("root\n".into(), "".into(), 0));
    assert_eq!(run(&os, "oper", "whoami").await.0, "oper\n");
    assert_eq!(run(&os, "root", "hostname").await.0, "ru1\n");
    assert_eq!(run(&os, "root", "id").await.0, "uid=0(root) gid=0(root) groups=0(root)\n");
    assert_eq!(run(&os, "oper", "id").await.0, "uid=1001(oper) gid=1001(oper) groups=1001(oper),4(adm)\n");
    let (uname, _, status) = run(&os, "oper", "uname -a").await;
    assert_eq!(status, 0);
    assert!(uname.starts_with("Linux ru1 "), "{uname}");
    assert!(uname.contains("Acme Radio RU-4400 firmware 4.2.1"), "{uname}");
    assert_eq!(run(&os, "oper", "uname").await.0, "Linux\n");
    assert_eq!(run(&os, "oper", "uname -n").await.0, "ru1\n");
    assert_eq!(
        run(&os, "oper", "cat /etc/proofrig-release").await.0,
        "VENDOR=\"Acme Radio\"\nMODEL=\"RU-4400\"\nSERIAL=\"ACME123456\"\nFIRMWARE=\"4.2.1\"\n"
    );
}

#[tokio::test]
async fn statuses_lists_and_quoting() {
    let os = device(Profile::Hardened);
    assert_eq!(run(&os, "oper", "true").await.2, 0);
    assert_eq!(run(&os, "oper", "false").await.2, 1);
    assert_eq!(run(&os, "oper", "echo  'a  b'   \"c\\\"d\" e\\ f").await.0, "a  b c\"d e f\n");
    assert_eq!(run(&os, "oper", "echo -n x").await.0, "x");
    assert_eq!(run(&os, "oper", "false && echo no || echo yes").await.0, "yes\n");
    assert_eq!(run(&os, "oper", "true && echo one; echo two").await.0, "one\ntwo\n");
    assert_eq!(run(&os, "oper", "echo hi # a comment").await.0, "hi\n");

    let (out, err, status) = run(&os, "oper", "frobnicate --now").await;
    assert_eq!((out.as_str(), err.as_str(), status), ("", "sh: frobnicate: not found\n", 127));

    let exit = os.run("oper", "echo before; exit 3; echo after", "").await;
    assert_eq!(exit.stdout, "before\n");
    assert_eq!(exit.status, 3);
    assert!(exit.exit_requested);
    assert_eq!(os.run("oper", "exit 300", "").await.status, 44); // 300 mod 256
    let plain = os.run("oper", "false; exit", "").await;
    assert_eq!((plain.status, plain.exit_requested), (1, true));

    let (_, err, status) = run(&os, "oper", "echo 'unterminated").await;
    assert_eq!(status, 2);
    assert!(err.contains("syntax error"), "{err}");
}

#[tokio::test]
async fn pipes_and_redirections() {
    let os = device(Profile::Hardened);
    assert_eq!(run(&os, "oper", "echo piped | cat").await.0, "piped\n");
    assert_eq!(run(&os, "oper", "cat < /etc/hostname").await.0, "ru1\n");
    let (out, err, status) = run(&os, "oper", "cat /nonexistent 2>/dev/null").await;
    assert_eq!((out.as_str(), err.as_str(), status), ("", "", 1));
    let (out, _, _) = run(&os, "oper", "cat /nonexistent 2>&1").await;
    assert_eq!(out, "cat: /nonexistent: No such file or directory\n");
    let (_, err, status) = run(&os, "oper", "echo x > /etc/motd").await;
    assert_eq!(status, 1);
    assert_eq!(err, "sh: can't create /etc/motd: Read-only file system\n");
    let stdin = os.run("oper", "cat", "from stdin\n").await;
    assert_eq!(stdin.stdout, "from stdin\n");
    assert!(os.reads_stdin("passwd --stdin oper"));
    assert!(os.reads_stdin("true; cat"));
    assert!(!os.reads_stdin("echo pw | passwd --stdin oper"));
    assert!(!os.reads_stdin("cat /etc/hostname"));
}

#[tokio::test]
async fn file_permissions_follow_modes_and_owners() {
    let hardened = device(Profile::Hardened);
    let weak = device(Profile::Weak);

    let (_, err, status) = run(&hardened, "oper", "cat /etc/shadow").await;
    assert_eq!((err.as_str(), status), ("cat: /etc/shadow: Permission denied\n", 1));
    let (shadow, _, status) = run(&weak, "oper", "cat /etc/shadow").await;
    assert_eq!(status, 0);
    assert!(shadow.starts_with("root:$6$"), "{shadow}");
    assert!(!shadow.contains("R00t-Secret-Pass"), "shadow must not hold clear text");
    let (root_view, _, _) = run(&hardened, "root", "cat /etc/shadow").await;
    assert!(root_view.contains("\nadmin:!$6$"), "disabled default account: {root_view}");
    assert!(run(&weak, "root", "cat /etc/shadow").await.0.contains("\nadmin:$6$"));

    assert_eq!(
        run(&hardened, "oper", "stat -c '%a %U %G %n' /etc/shadow /etc/ssh/ssh_host_ed25519_key /etc/proofrig/device.conf").await.0,
        "640 root shadow /etc/shadow\n600 root root /etc/ssh/ssh_host_ed25519_key\n644 root root /etc/proofrig/device.conf\n"
    );
    assert_eq!(
        run(&weak, "oper", "stat -c '%a %U %G %n' /etc/shadow /etc/proofrig/device.conf").await.0,
        "644 root shadow /etc/shadow\n666 root root /etc/proofrig/device.conf\n"
    );
    assert_eq!(run(&weak, "oper", "stat -c %A /tmp").await.0, "drwxrwxrwt\n");

    let (out, err, status) = run(&hardened, "oper", "stat -c %n /etc/nothing /etc/hostname").await;
    assert_eq!(out, "/etc/hostname\n");
    assert_eq!(err, "stat: cannot statx '/etc/nothing': No such file or directory\n");
    assert_eq!(status, 1);

    let (ls, _, status) = run(&hardened, "oper", "ls -l /etc/shadow").await;
    assert_eq!(status, 0);
    assert!(ls.starts_with("-rw-r----- 1 root shadow "), "{ls}");
    assert!(ls.trim_end().ends_with(" /etc/shadow"), "{ls}");
    let (ls, _, _) = run(&weak, "oper", "ls -l /etc/shadow").await;
    assert!(ls.starts_with("-rw-r--r-- 1 root shadow "), "{ls}");
    let (listing, _, _) = run(&hardened, "oper", "ls -l /etc/ssh").await;
    assert!(listing.starts_with("total "), "{listing}");
    assert!(listing.contains("-rw------- 1 root root "), "{listing}");
    assert!(listing.contains(" ssh_host_ed25519_key.pub\n"), "{listing}");

    // /root is 0700: neither listing nor reading below it for others.
    let (_, err, status) = run(&hardened, "oper", "ls /root").await;
    assert_eq!((err.as_str(), status), ("ls: cannot open directory '/root': Permission denied\n", 2));
    assert_eq!(run(&hardened, "root", "ls /root").await.2, 0);
    // Relative paths start in the home directory.
    assert_eq!(run(&hardened, "oper", "pwd").await.0, "/home/oper\n");
    assert_eq!(run(&hardened, "oper", "stat -c %n ../../etc/hostname").await.0, "../../etc/hostname\n");
}

#[tokio::test]
async fn ss_lists_the_device_listeners() {
    let os = device(Profile::Weak);
    os.add_listener("127.0.0.11:2222".parse().unwrap(), "sshd");
    os.add_listener("127.0.0.11:2323".parse().unwrap(), "telnetd");
    let (out, _, status) = run(&os, "oper", "ss -ltn").await;
    assert_eq!(status, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("State"), "{out}");
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[1].starts_with("LISTEN") && lines[1].contains("127.0.0.11:2222"), "{out}");
    assert!(lines[2].contains("127.0.0.11:2323"), "{out}");
    assert!(!out.contains("telnetd"), "no process names without -p");
    assert!(run(&os, "root", "ss -ltnp").await.0.contains("users:((\"telnetd\""));
    os.remove_listener("127.0.0.11:2323".parse().unwrap());
    assert_eq!(run(&os, "oper", "ss -ltn").await.0.lines().count(), 2);

    // TCP and UDP together add ss's Netid column; the device has no UDP sockets.
    let (both, _, status) = run(&os, "oper", "ss -ltnu").await;
    assert_eq!(status, 0);
    let lines: Vec<&str> = both.lines().collect();
    assert!(lines[0].starts_with("Netid State"), "{both}");
    assert_eq!(lines.len(), 2, "{both}");
    assert!(lines[1].starts_with("tcp   LISTEN") && lines[1].contains("127.0.0.11:2222 "), "{both}");
    assert_eq!(run(&os, "oper", "ss -lun").await.0.lines().count(), 1);
}

#[tokio::test]
async fn grep_head_tail_and_wc_read_files_and_pipes() {
    let os = device(Profile::Hardened);
    let peer = "127.0.0.7:40002".parse().unwrap();
    for _ in 0..2 {
        let _ = os.login_with_password("nobody-here", "x", LoginOrigin::Ssh { peer });
    }
    os.login_with_password("oper", "Op3rator-Passw0rd", LoginOrigin::Ssh { peer }).unwrap();
    let log = "/var/log/auth.log";
    let pattern = "'^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z .*Failed [a-z]+ for (invalid user )?nobody-here from 127\\.0\\.0\\.7 '";
    assert_eq!(run(&os, "oper", &format!("grep -c -E {pattern} {log}")).await, ("2\n".into(), "".into(), 0));
    assert_eq!(run(&os, "oper", &format!("grep -cE {pattern} {log} | wc -l")).await.0, "1\n");
    // No match: a count of 0 and status 1, as grep does.
    assert_eq!(run(&os, "oper", &format!("grep -c Accepted.*root {log}")).await, ("0\n".into(), "".into(), 1));
    // Basic regular expressions take their operators escaped.
    assert_eq!(run(&os, "oper", &format!("grep -c 'user \\(nobody\\)' {log}")).await.0, "2\n");
    assert_eq!(run(&os, "oper", &format!("grep -c 'user (nobody)' {log}")).await.0, "0\n");
    let (last, _, status) = run(&os, "oper", &format!("grep -E 'Failed|Accepted' {log} | tail -n 1")).await;
    assert_eq!(status, 0);
    assert!(last.contains("Accepted password for oper from 127.0.0.7 port 40002 ssh2"), "{last}");
    assert_eq!(last.lines().count(), 1);
    let (first, _, _) = run(&os, "oper", &format!("head -n1 {log}")).await;
    assert!(first.contains("Failed password for invalid user nobody-here"), "{first}");
    assert_eq!(run(&os, "oper", &format!("wc -l {log}")).await.0, format!("3 {log}\n"));
    assert_eq!(run(&os, "oper", &format!("grep -v -i failed {log} | wc -l")).await.0, "1\n");
    assert_eq!(run(&os, "oper", "grep -q ssh /etc/ssh/sshd_config").await.2, 0);
    assert_eq!(run(&os, "oper", "echo abc | grep -F a.c").await.2, 1);
    assert_eq!(run(&os, "oper", "echo 'a b' | wc -w").await.0, "2\n");
    // Files are permission-checked; an unreadable one is an error (status 2).
    let (out, err, status) = run(&os, "admin", &format!("grep -c x {log}")).await;
    assert_eq!((out.as_str(), status), ("", 2), "{err}");
    assert_eq!(err, format!("grep: {log}: Permission denied\n"));
    assert_eq!(run(&os, "oper", "grep -E '(' /etc/hostname").await.2, 2);
    assert_eq!(run(&os, "oper", "tail -n x /etc/hostname").await.2, 1);
}

#[tokio::test]
async fn passwd_enforces_the_profile_policy() {
    let hardened = device(Profile::Hardened);
    let ssh = LoginOrigin::Ssh { peer: "127.0.0.1:40000".parse().unwrap() };

    let short = hardened.run("oper", "passwd --stdin oper", "Sh0rt!\n").await;
    assert_eq!(short.status, 1);
    assert!(short.stderr.contains("BAD PASSWORD: The password is shorter than 12 characters"), "{}", short.stderr);
    let simple = hardened.run("oper", "echo alllowercaseletters | passwd --stdin oper", "").await;
    assert_eq!(simple.status, 1);
    assert!(simple.stderr.contains("less than 3 character classes"), "{}", simple.stderr);
    // Refused changes leave the old password working.
    assert!(hardened.login_with_password("oper", "Op3rator-Passw0rd", ssh.clone()).is_ok());

    let denied = hardened.run("oper", "passwd --stdin root", "Another-Good-Pass-1\n").await;
    assert_eq!(denied.status, 1);
    assert!(denied.stderr.contains("may not view or modify"), "{}", denied.stderr);

    let good = hardened.run("oper", "passwd --stdin oper", "New-Operator-Pass-7\n").await;
    assert_eq!(good.status, 0, "{}", good.stderr);
    assert!(good.stdout.contains("all authentication tokens updated successfully"));
    assert!(hardened.login_with_password("oper", "New-Operator-Pass-7", ssh.clone()).is_ok());
    assert!(hardened.login_with_password("oper", "Op3rator-Passw0rd", ssh.clone()).is_err());

    let interactive = hardened.run("oper", "passwd", "").await;
    assert_eq!(interactive.status, 2);
    assert!(interactive.stderr.contains("passwd --stdin USER"));

    let weak = device(Profile::Weak);
    let anything = weak.run("root", "echo 1 | passwd --stdin admin", "").await;
    assert_eq!(anything.status, 0, "{}", anything.stderr);
    assert!(weak.login_with_password("admin", "1", ssh).is_ok());
}

#[tokio::test]
async fn sleep_waits_without_blocking_the_runtime() {
    let os = device(Profile::Hardened);
    let started = std::time::Instant::now();
    // Both run concurrently on this single-threaded test runtime: a blocking sleep
    // would serialize them and take twice as long.
    let (a, b) = tokio::join!(os.run("oper", "sleep 0.5", ""), os.run("oper", "sleep 0.5", ""));
    let elapsed = started.elapsed();
    assert_eq!((a.status, b.status), (0, 0));
    assert!(elapsed >= std::time::Duration::from_millis(500), "{elapsed:?}");
    assert!(elapsed < std::time::Duration::from_millis(900), "{elapsed:?}");
    assert_eq!(os.run("oper", "sleep soon", "").await.status, 1);
}

#[tokio::test]
async fn auth_log_is_readable_by_log_readers_only() {
    let os = device(Profile::Hardened);
    let peer = "127.0.0.1:40001".parse().unwrap();
    let _ = os.login_with_password("oper", "wrong", LoginOrigin::Ssh { peer });
    os.login_with_password("oper", "Op3rator-Passw0rd", LoginOrigin::Ssh { peer }).unwrap();
    os.login_with_password("root", "R00t-Secret-Pass", LoginOrigin::Console { line: "ttyS0".into() }).unwrap();
    let (log, _, status) = run(&os, "oper", "cat /var/log/auth.log").await;
    assert_eq!(status, 0);
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 3, "{log}");
    assert!(lines[0].contains(" ru1 sshd[") && lines[0].contains("Failed password for oper from 127.0.0.1 port 40001 ssh2"), "{log}");
    assert!(lines[1].contains("Accepted password for oper from 127.0.0.1 port 40001 ssh2"), "{log}");
    assert!(lines[2].contains("login[") && lines[2].contains("Accepted password for root on ttyS0"), "{log}");
    // admin is not in adm.
    assert_eq!(run(&os, "admin", "cat /var/log/auth.log").await.2, 1);
}

#[tokio::test]
async fn last_status_expands_as_a_shell_does() {
    let os = device(Profile::Hardened);
    assert_eq!(run(&os, "root", "false; echo $?").await.0, "1\n");
    assert_eq!(run(&os, "root", "true; echo \"s=$?\"").await.0, "s=0\n");
    // The marker proofrig's console `run` types: quotes split it so its echo differs.
    assert_eq!(run(&os, "root", "nosuch; echo PRF_x''_E:$?").await.0, "PRF_x_E:127\n");
    assert_eq!(run(&os, "root", "echo '$?'").await.0, "$?\n", "single quotes keep it literal");
}

#[tokio::test]
async fn accounts_hashes_daemons_and_the_auth_log_differ_by_profile() {
    let hardened = device(Profile::Hardened);
    let weak = device(Profile::Weak);
    // The hash scheme of every account, never the hash (what the library's cases read).
    let schemes = "grep -o -E '^[^:]*:[!*]*(\\$[^$:]*\\$|[^:]{0,2})' /etc/shadow";
    assert_eq!(run(&hardened, "root", schemes).await.0, "root:$6$\ndaemon:*\nwww-data:*\nsyslog:*\nadmin:!$6$\noper:$6$\n");
    assert_eq!(run(&weak, "oper", schemes).await.0, "root:$6$\nsupport:$1$\ndaemon:*\nwww-data:*\nsyslog:*\nadmin:$6$\noper:$6$\nguest:\n");
    let passwd = run(&weak, "oper", "cat /etc/passwd").await.0;
    assert!(passwd.contains("\nsupport:x:0:0:Vendor support:/root:/bin/sh\n"), "{passwd}");
    assert!(passwd.contains("\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"), "{passwd}");
    assert!(!run(&hardened, "oper", "cat /etc/passwd").await.0.contains("support"));
    // The guest's empty password field is a real one: it logs in with nothing.
    let peer = "127.0.0.1:40002".parse().unwrap();
    assert!(weak.login_with_password("guest", "", LoginOrigin::Ssh { peer }).is_ok());
    assert!(weak.login_with_password("daemon", "", LoginOrigin::Ssh { peer }).is_err(), "a system account has no login");

    let ps = "ps -e -o pid,ppid,user,comm";
    let listing = run(&hardened, "oper", ps).await.0;
    assert_eq!(
        listing,
        "  PID  PPID USER     COMMAND\n    1     0 root     init\n  310     1 syslog   syslogd\n  320     1 root     httpd\n  321   320 www-data httpd\n  \
         412     1 root     sshd\n \
         1001   412 oper     sh\n 1002  1001 oper     ps\n"
    );
    let listing = run(&weak, "oper", ps).await.0;
    for shared in ["daemon   syslogd", "daemon   ftpd", "root     httpd", "root     telnetd"] {
        assert!(listing.contains(shared), "{listing}");
    }
    assert_eq!(run(&weak, "oper", "ps -o uid").await.2, 1);

    let mode = "stat -c '%a %U %G' /var/log/auth.log";
    assert_eq!(run(&hardened, "oper", mode).await.0, "640 root adm\n");
    assert_eq!(run(&weak, "oper", mode).await.0, "644 root adm\n");
}

#[tokio::test]
async fn grep_searches_directories_for_patterns_read_from_standard_input() {
    let weak = device(Profile::Weak);
    // root's password, as a line on standard input: the weak device keeps it in its
    // world-writable configuration.
    let out = weak.run("oper", "grep -r -l -F -f - /etc /var/log", "R00t-Secret-Pass\n").await;
    // As GNU grep: a file it may not read (the host key) makes the status 2, matches or not.
    assert_eq!((out.stdout.as_str(), out.status), ("/etc/proofrig/device.conf\n", 2), "{out:?}");
    let hardened = device(Profile::Hardened);
    let out = hardened.run("oper", "grep -r -l -F -f - /etc /var/log", "R00t-Secret-Pass\n").await;
    assert_eq!(out.stdout, "", "{out:?}");
    assert!(out.stderr.contains("grep: /etc/shadow: Permission denied"), "unreadable files are named: {out:?}");
    assert_eq!(out.status, 2);
    let hashes = "grep -r -l -E -e '\\$(1|6)\\$[^:$[:space:]]{2,}\\$' /etc";
    assert_eq!(run(&weak, "oper", hashes).await.0, "/etc/shadow\n");
    assert_eq!(run(&hardened, "root", hashes).await.0, "/etc/shadow\n");
    // One count per file it read: the 11 of /etc oper may read (not shadow, not the host
    // key; the software list; the web server's configuration through `adm`, its add-on's
    // file, its mime.types).
    assert_eq!(run(&hardened, "oper", "grep -r -c '' /etc | wc -l").await.0.trim(), "11");
}

#[tokio::test]
async fn a_session_shell_is_a_process_until_it_ends_and_dollar_dollar_names_it() {
    let os = device(Profile::Hardened);
    let pid = os.open_session("oper", 412);
    let own = os.run_in_session("oper", pid, "echo $$ \"$$\" '$$'", "").await.stdout;
    assert_eq!(own, format!("{pid} {pid} $$\n"));
    let listed = |text: &str, pid: u32| text.lines().any(|l| l.split_whitespace().next() == Some(pid.to_string().as_str()));
    let ps = os.run("root", "ps -e -o pid,user,comm", "").await.stdout;
    assert!(listed(&ps, pid), "the open session's shell is listed: {ps}");
    os.end_session(pid);
    let ps = os.run("root", "ps -e -o pid,user,comm", "").await.stdout;
    assert!(!listed(&ps, pid), "an ended session's shell is gone: {ps}");
}

#[tokio::test]
async fn find_lists_set_user_id_files_and_sudo_asks_unless_the_profile_says_nopasswd() {
    let hardened = device(Profile::Hardened);
    let weak = device(Profile::Weak);
    for os in [&hardened, &weak] {
        let (out, err, status) = run(os, "oper", "find /bin /usr -perm -4000 -user root -type f").await;
        assert_eq!(out, "/usr/bin/passwd\n/usr/bin/sudo\n");
        assert_eq!((err.as_str(), status), ("find: '/bin': No such file or directory\n", 1));
        let (_, err, status) = run(os, "oper", "find / -type d").await;
        assert!(err.contains("find: '/root': Permission denied"), "{err}");
        assert_eq!(status, 1);
        assert_eq!(run(os, "oper", "find /usr -bogus").await.2, 1);
    }
    assert_eq!(run(&hardened, "oper", "sudo -n id -u").await, (String::new(), "sudo: a password is required\n".into(), 1));
    assert_eq!(run(&weak, "oper", "sudo -n id -u").await, ("0\n".into(), String::new(), 0));
    assert_eq!(run(&hardened, "root", "sudo -n id -u").await.0, "0\n", "root needs no password");
}

#[tokio::test]
async fn kill_zero_says_whether_the_caller_may_signal_a_process() {
    let os = device(Profile::Hardened);
    assert_eq!(run(&os, "oper", "kill -0 1").await, (String::new(), "sh: kill: can't kill pid 1: Operation not permitted\n".into(), 1));
    assert_eq!(run(&os, "root", "kill -0 1").await.2, 0);
    assert_eq!(run(&os, "oper", "kill -0 $$").await.2, 0, "its own shell");
    assert_eq!(run(&os, "oper", "kill -0 99999").await.2, 1);
    assert_eq!(run(&os, "root", "kill -TERM 1").await.2, 2, "nothing but -0 is simulated");
}

/// What the kernel cases read: `/proc/sys` settings and `/proc/mounts`, by any user,
/// with `cat` and `grep -H`; the weak device's are the careless ones.
#[tokio::test]
async fn kernel_settings_and_mounts_differ_by_profile() {
    let hardened = device(Profile::Hardened);
    let weak = device(Profile::Weak);
    let settings = "grep -H . /proc/sys/net/ipv4/conf/all/rp_filter /proc/sys/net/ipv4/tcp_syncookies /proc/sys/kernel/randomize_va_space";
    assert_eq!(
        run(&hardened, "oper", settings).await,
        (
            "/proc/sys/net/ipv4/conf/all/rp_filter:1\n/proc/sys/net/ipv4/tcp_syncookies:1\n/proc/sys/kernel/randomize_va_space:2\n".into(),
            "".into(),
            0
        )
    );
    assert_eq!(
        run(&weak, "oper", settings).await.0,
        "/proc/sys/net/ipv4/conf/all/rp_filter:0\n/proc/sys/net/ipv4/tcp_syncookies:0\n/proc/sys/kernel/randomize_va_space:0\n"
    );
    assert_eq!(run(&weak, "oper", "cat /proc/sys/net/ipv4/ip_forward").await.0, "1\n");
    // -H names the file of a single one too; a setting the kernel lacks is an error, not a value.
    assert_eq!(run(&hardened, "oper", "grep -H . /proc/sys/net/ipv4/ip_forward").await.0, "/proc/sys/net/ipv4/ip_forward:0\n");
    let (out, err, status) = run(&hardened, "oper", "grep -H . /proc/sys/net/ipv4/no_such_setting").await;
    assert_eq!((out.as_str(), status), ("", 2), "{err}");
    let mounts = |text: String| text.lines().find(|l| l.contains(" /media/usb0 ")).map(String::from).unwrap_or_default();
    assert!(mounts(run(&hardened, "oper", "cat /proc/mounts").await.0).contains(" vfat rw,nosuid,nodev,noexec,"));
    assert!(mounts(run(&weak, "oper", "cat /proc/mounts").await.0).contains(" vfat rw,relatime,"));
}

/// `od` and `cmp -l` print a program's and a package's bytes as GNU coreutils and
/// diffutils do for the same bytes (the plans parse that form), and `fw-install`
/// tells the tester's two packages apart on the hardened device only.
#[tokio::test]
async fn od_and_cmp_print_as_gnu_does_and_fw_install_checks_packages_on_the_hardened_device() {
    use proofrig_simlab::programs::{elf_image, genuine_package, tampered_package, Build, GENUINE_PACKAGE, TAMPERED_PACKAGE};
    let dir = tempfile::tempdir().unwrap();
    let gnu = |args: &[&str]| {
        let out = std::process::Command::new(args[0]).args(&args[1..]).current_dir(dir.path()).output().expect("run a GNU tool");
        (String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap(), out.status.code().unwrap() as u8)
    };
    let hardened = device(Profile::Hardened);
    let weak = device(Profile::Weak);
    std::fs::write(dir.path().join("httpd"), elf_image(Build::Careless)).unwrap();
    for range in ["-j 0 -N 4096", "-j 64 -N 56", "-j 100000 -N 4"] {
        let sim = run(&weak, "oper", &format!("od -An -v -tx1 {range} /usr/sbin/httpd")).await;
        let real = gnu(&["sh", "-c", &format!("od -An -v -tx1 {range} httpd")]);
        assert_eq!((sim.0, sim.2), (real.0, real.2), "od {range}");
    }
    std::fs::write(dir.path().join("genuine"), genuine_package()).unwrap();
    std::fs::write(dir.path().join("tampered"), tampered_package()).unwrap();
    let sim = run(&hardened, "oper", &format!("cmp -l {GENUINE_PACKAGE} {TAMPERED_PACKAGE}")).await;
    assert_eq!(sim, gnu(&["cmp", "-l", "genuine", "tampered"]));
    assert_eq!(run(&hardened, "oper", &format!("cmp -l {GENUINE_PACKAGE} {GENUINE_PACKAGE}")).await, (String::new(), String::new(), 0));

    assert_eq!(run(&hardened, "oper", &format!("fw-install {GENUINE_PACKAGE}")).await.2, 0);
    let refused = run(&hardened, "oper", &format!("fw-install {TAMPERED_PACKAGE}")).await;
    assert_eq!(refused.2, 3, "{refused:?}");
    assert!(refused.1.contains("signature verification failed"), "{refused:?}");
    assert_eq!(run(&weak, "oper", &format!("fw-install {TAMPERED_PACKAGE}")).await.2, 0, "the weak installer checks nothing");
}
