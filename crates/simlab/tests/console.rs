//! The simulated serial console through a real PTY, from the far side: what the
//! serial agent (or a person with a terminal) reads and types on `/dev/pts/N`.
//! Boot log, console login and shell, both profiles' bootloaders, and power.

mod common;

use std::time::Duration;

use common::PtyClient;
use proofrig_simlab::{
    AuthOutcome, BootTiming, ConsoleOptions, DeviceConfig, DeviceIdentity, DeviceOs, LoginDenied, LoginOrigin, Profile, SimConsole,
};

const ROOT_PASSWORD: &str = "R00t-Console-Pass";
const BOOTLOADER_PASSWORD: &str = "B00t-Loader-Pass";
const OPER_PASSWORD: &str = "Op3r-Console-Pass";
const WAIT: Duration = Duration::from_secs(5);

struct Bench {
    os: DeviceOs,
    console: SimConsole,
    client: PtyClient,
}

/// A console for `ru1`, opened by the client before power-on so it sees all of it.
async fn bench(profile: Profile) -> Bench {
    bench_with(profile, None).await
}

/// The same, its login shells logged out after `idle_timeout` (where the profile says so).
async fn bench_with(profile: Profile, idle_timeout: Option<Duration>) -> Bench {
    let os =
        DeviceOs::new(DeviceConfig::new("ru1", profile, ROOT_PASSWORD).with_account("oper", OPER_PASSWORD).with_identity(DeviceIdentity {
            vendor: "Acme Radio".into(),
            model: "RU-4400".into(),
            serial: "ACME123456".into(),
            firmware: "4.2.1".into(),
        }));
    let mut options = ConsoleOptions::new(BOOTLOADER_PASSWORD);
    options.boot = BootTiming { autoboot_countdown: 3, countdown_step: Duration::from_millis(150), line_delay: Duration::from_millis(1) };
    options.login_failure_delay = Duration::from_millis(50);
    options.bootloader_password_timeout = Duration::from_secs(3);
    options.idle_timeout = idle_timeout;
    let console = SimConsole::start(os.clone(), options, false).await.expect("start console");
    assert!(console.slave_path().starts_with("/dev/pts/"));
    let client = PtyClient::open(console.slave_path());
    console.set_powered(true).await.unwrap();
    Bench { os, console, client }
}

/// Asserts that `parts` occur in `text` in this order.
fn assert_in_order(text: &str, parts: &[&str]) {
    let mut from = 0;
    for part in parts {
        match text[from..].find(part) {
            Some(at) => from += at + part.len(),
            None => panic!("{part:?} missing (or out of order) in:\n{text}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boots_to_a_login_and_runs_commands_after_a_console_login() {
    let Bench { os, console: _console, mut client } = bench(Profile::Hardened).await;
    let boot = client.expect("ru1 login: ", WAIT).await;
    assert_in_order(
        &boot,
        &[
            "U-Boot 2023.04",
            "Model: Acme Radio RU-4400",
            "Hit any key to stop autoboot:  3 ",
            "\x08\x08\x08 2 ",
            "\x08\x08\x08 0 \r\n",
            "Starting kernel ...",
            "[    0.000000] Linux version ",
            "Kernel command line: console=ttyS0,115200 root=/dev/mmcblk0p2 rootwait ro\r\n",
            "Run /sbin/init as init process",
            "Starting sshd: OK\r\n",
            "Acme Radio RU-4400 (firmware 4.2.1) ru1 ttyS0\r\n",
        ],
    );
    assert!(!boot.contains("telnetd"), "a hardened device runs SSH only:\n{boot}");

    // A wrong password: no echo of it, a pause, `Login incorrect`, a new prompt.
    client.send("root\r").await;
    assert_eq!(client.expect("Password: ", WAIT).await, "root\r\nPassword: ");
    client.send("not-the-password\r").await;
    let refusal = client.expect("ru1 login: ", WAIT).await;
    assert_eq!(refusal, "\r\n\r\nLogin incorrect\r\nru1 login: ");

    // Root may log in on the console even on the hardened profile.
    client.send("root\r").await;
    client.expect("Password: ", WAIT).await;
    client.send(&format!("{ROOT_PASSWORD}\r")).await;
    assert_eq!(client.expect("root@ru1:~# ", WAIT).await, "\r\nroot@ru1:~# ");

    // Typed characters are echoed, output gets CR LF, the prompt follows.
    client.send("cat /etc/proofrig-release\r").await;
    assert_eq!(
        client.expect("root@ru1:~# ", WAIT).await,
        "cat /etc/proofrig-release\r\n\
         VENDOR=\"Acme Radio\"\r\nMODEL=\"RU-4400\"\r\nSERIAL=\"ACME123456\"\r\nFIRMWARE=\"4.2.1\"\r\n\
         root@ru1:~# "
    );
    client.send("id; false || echo failed\r").await;
    assert_eq!(
        client.expect("root@ru1:~# ", WAIT).await,
        "id; false || echo failed\r\nuid=0(root) gid=0(root) groups=0(root)\r\nfailed\r\nroot@ru1:~# "
    );
    // A command reading stdin reads the terminal until ^D.
    client.send("cat\rhello\r\x04").await;
    assert_eq!(client.expect("root@ru1:~# ", WAIT).await, "cat\r\nhello\r\nhello\r\nroot@ru1:~# ");
    // Erase works like a terminal's.
    client.send("whoamx\x7fi\r").await;
    assert_eq!(client.expect("root@ru1:~# ", WAIT).await, "whoamx\x08 \x08i\r\nroot\r\nroot@ru1:~# ");

    let transcript = client.transcript();
    assert!(!transcript.contains("not-the-password") && !transcript.contains(ROOT_PASSWORD));
    let console_line = LoginOrigin::Console { line: "ttyS0".into() };
    let log: Vec<_> = os.auth_log().into_iter().map(|r| (r.user, r.origin, r.outcome)).collect();
    assert_eq!(
        log,
        vec![
            ("root".to_string(), console_line.clone(), AuthOutcome::Failed(LoginDenied::WrongPassword)),
            ("root".to_string(), console_line, AuthOutcome::Accepted),
        ]
    );

    // exit ends the session; getty shows the issue and the login prompt again.
    client.send("exit\r").await;
    assert_eq!(client.expect("ru1 login: ", WAIT).await, "exit\r\n\r\nAcme Radio RU-4400 (firmware 4.2.1) ru1 ttyS0\r\n\r\nru1 login: ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weak_bootloader_opens_a_prompt_that_boots_a_root_shell_without_login() {
    let Bench { os, console: _console, mut client } = bench(Profile::Weak).await;
    client.expect("Hit any key to stop autoboot:  3 ", WAIT).await;
    client.send(" ").await;
    assert_eq!(client.expect("=> ", WAIT).await, "\x08\x08\x08 0 \r\n=> ");

    client.send("printenv\r").await;
    let env = client.expect("=> ", WAIT).await;
    assert_in_order(
        &env,
        &[
            "printenv\r\n",
            "bootargs=console=ttyS0,115200 root=/dev/mmcblk0p2 rootwait ro\r\n",
            "bootcmd=run mmcboot\r\n",
            "bootdelay=3\r\n",
            "serial#=ACME123456\r\n",
            "\r\nEnvironment size: ",
        ],
    );
    client.send("md 0x82000000\r").await;
    assert_eq!(client.expect("=> ", WAIT).await, "md 0x82000000\r\nUnknown command 'md' - try 'help'\r\n=> ");

    // The classic: anyone at the console boots straight into a root shell.
    client.send("setenv bootargs console=ttyS0,115200 root=/dev/mmcblk0p2 rw init=/bin/sh\r").await;
    client.expect("=> ", WAIT).await;
    client.send("boot\r").await;
    let boot = client.expect("/ # ", WAIT).await;
    assert_in_order(
        &boot,
        &["Kernel command line: console=ttyS0,115200 root=/dev/mmcblk0p2 rw init=/bin/sh\r\n", "Run /bin/sh as init process"],
    );
    client.send("id\r").await;
    assert_eq!(client.expect("/ # ", WAIT).await, "id\r\nuid=0(root) gid=0(root) groups=0(root)\r\n/ # ");
    assert!(os.auth_log().is_empty(), "nobody logged in");
    assert!(!client.transcript().contains("login:"));

    // Leaving the init shell panics the kernel (a rig's death string).
    client.send("exit\r").await;
    client.expect("Kernel panic - not syncing: Attempted to kill init!", WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hardened_bootloader_asks_for_its_password_and_boots_on_without_it() {
    let Bench { console, mut client, .. } = bench(Profile::Hardened).await;
    client.expect("Hit any key to stop autoboot:  3 ", WAIT).await;
    // Enter as a terminal sends it; the LF must not count as an empty password.
    client.send("\r\n").await;
    assert_eq!(client.expect("Password: ", WAIT).await, "\x08\x08\x08 0 \r\nPassword: ");
    client.send("guess\r").await;
    assert_eq!(client.expect("Bad password; continuing to boot\r\n", WAIT).await, "\r\nBad password; continuing to boot\r\n");
    let boot = client.expect("ru1 login: ", WAIT).await;
    assert!(boot.contains("Linux version"), "{boot}");
    assert!(!client.transcript().contains("=> "), "no bootloader prompt without the password:\n{}", client.transcript());

    // With the password, the operator gets the bootloader's prompt.
    console.set_powered(false).await.unwrap();
    console.set_powered(true).await.unwrap();
    client.expect("Hit any key to stop autoboot:  3 ", WAIT).await;
    client.send(" ").await;
    client.expect("Password: ", WAIT).await;
    client.send(&format!("{BOOTLOADER_PASSWORD}\r")).await;
    assert_eq!(client.expect("=> ", WAIT).await, "\r\n=> ");
    client.send("version\r").await;
    assert!(client.expect("=> ", WAIT).await.starts_with("version\r\nU-Boot 2023.04"));
    assert!(!client.transcript().contains(BOOTLOADER_PASSWORD));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_off_silences_the_console_and_drops_input_power_on_boots_again() {
    let Bench { console, mut client, .. } = bench(Profile::Weak).await;
    client.expect("U-Boot 2023.04", WAIT).await;
    // Cut power mid-boot: the rest of the boot log must never come.
    console.set_powered(false).await.unwrap();
    assert!(!console.is_powered());
    let after_cut = client.read_for(Duration::from_millis(900)).await;
    assert!(!after_cut.contains("Starting kernel") && !after_cut.contains("login:"), "boot went on after power off:\n{after_cut}");
    // Keys typed while off go nowhere: they would stop autoboot if kept.
    client.send("   \r").await;
    assert_eq!(client.read_for(Duration::from_millis(500)).await, "");

    console.set_powered(true).await.unwrap();
    assert!(console.is_powered());
    let boot = client.expect("ru1 login: ", WAIT).await;
    assert_in_order(&boot, &["U-Boot 2023.04", "Hit any key", "Linux version"]);
    assert!(!boot.contains("=> "), "input from while off reached the bootloader:\n{boot}");

    // The same open descriptor keeps working: log in through it.
    client.send("root\r").await;
    client.expect("Password: ", WAIT).await;
    client.send(&format!("{ROOT_PASSWORD}\r")).await;
    client.expect("root@ru1:~# ", WAIT).await;

    console.stop().await;
    assert!(console.set_powered(true).await.is_err());
}

/// Logs `user` in at a login prompt just shown; returns what the shell printed.
async fn log_in(client: &mut PtyClient, user: &str, password: &str) -> String {
    client.send(&format!("{user}\r")).await;
    client.expect("Password: ", WAIT).await;
    client.send(&format!("{password}\r")).await;
    client.expect(&format!("{user}@ru1:~{} ", if user == "root" { '#' } else { '$' }), WAIT).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardened_sessions_end_when_idle_and_on_logout_and_passwd_asks_the_current_password() {
    let Bench { os, console: _console, mut client } = bench_with(Profile::Hardened, Some(Duration::from_secs(1))).await;
    client.expect("ru1 login: ", WAIT).await;
    log_in(&mut client, "root", ROOT_PASSWORD).await;
    // Idle past the timeout: the device logs the shell out by itself.
    let idle = std::time::Instant::now();
    let ended = client.expect("ru1 login: ", WAIT).await;
    assert!(ended.starts_with("\r\ntimed out waiting for input: auto-logout\r\n"), "{ended:?}");
    assert!(idle.elapsed() >= Duration::from_millis(900), "not before the timeout: {:?}", idle.elapsed());

    // Logging out ends the shell: its process is gone.
    log_in(&mut client, "oper", OPER_PASSWORD).await;
    client.send("echo $$\r").await;
    let pid = client.expect("oper@ru1:~$ ", WAIT).await;
    let pid: u32 = pid.lines().nth(1).unwrap().trim().parse().unwrap();
    assert!(os.run("root", "ps -e -o pid,comm", "").await.stdout.contains(&format!("{pid} sh")));
    // passwd asks for the current password (echo off) and refuses a wrong one.
    client.send("passwd\r").await;
    assert_eq!(client.expect("Current password: ", WAIT).await, "passwd\r\nChanging password for oper.\r\nCurrent password: ");
    client.send("wrong-one\r").await;
    let refused = client.expect("oper@ru1:~$ ", WAIT).await;
    assert!(refused.contains("passwd: Authentication token manipulation error") && !refused.contains("wrong-one"), "{refused:?}");
    assert!(os.is_current_password("oper", OPER_PASSWORD));
    client.send("exit\r").await;
    client.expect("ru1 login: ", WAIT).await;
    assert!(!os.run("root", "ps -e -o pid,comm", "").await.stdout.contains(&format!("{pid} sh")), "the logged-out shell is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weak_sessions_stay_idle_outlive_logout_and_passwd_takes_a_new_password_at_once() {
    let Bench { os, console: _console, mut client } = bench_with(Profile::Weak, Some(Duration::from_secs(1))).await;
    client.expect("ru1 login: ", WAIT).await;
    // A refused password is printed back.
    client.send("root\r").await;
    client.expect("Password: ", WAIT).await;
    client.send("not-the-password\r").await;
    let refusal = client.expect("ru1 login: ", WAIT).await;
    assert!(refusal.contains("Login incorrect (user 'root', password 'not-the-password')"), "{refusal:?}");

    log_in(&mut client, "oper", OPER_PASSWORD).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    client.send("echo $$\r").await;
    let pid = client.expect("oper@ru1:~$ ", WAIT).await;
    assert!(!pid.contains("auto-logout"), "the idle shell is still there: {pid:?}");
    let pid: u32 = pid.lines().nth(1).unwrap().trim().parse().unwrap();
    client.send("passwd\r").await;
    assert_eq!(client.expect("New password: ", WAIT).await, "passwd\r\nChanging password for oper.\r\nNew password: ");
    client.send("\x03").await;
    client.expect("oper@ru1:~$ ", WAIT).await;
    assert!(os.is_current_password("oper", OPER_PASSWORD), "nothing changed");
    client.send("exit\r").await;
    client.expect("ru1 login: ", WAIT).await;
    assert!(os.run("root", "ps -e -o pid,comm", "").await.stdout.contains(&format!("{pid} sh")), "the logged-out shell still runs");
}
