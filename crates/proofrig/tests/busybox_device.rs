//! The rig the BusyBox + dropbear device writes is one a technician could have written:
//! `rig check` accepts it, and from inside the device's network namespace `rig probe`
//! reaches its console, its dropbear (with the pinned host key) and its PDU through the
//! bridge; `power` really cuts and restores the device, and `ssh` runs a command on it.

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use proofrig_testpeers::busybox::{BusyboxDevice, Profile};

/// proofrig inside the device's network namespace, recording sessions in `transcripts`.
fn proofrig_at(device: &BusyboxDevice, transcripts: &Path, args: &[&str]) -> Output {
    device
        .command(env!("CARGO_BIN_EXE_proofrig"))
        .arg("--transcripts")
        .arg(transcripts)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run proofrig")
}

fn all(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn up(table: &str, device: &str, channel: &str) -> bool {
    table.lines().any(|l| l.split_whitespace().take(3).collect::<Vec<_>>() == [device, channel, "up"])
}

#[test]
fn the_busybox_rig_checks_probes_powers_and_runs_commands() {
    for profile in [Profile::Careless, Profile::Hardened] {
        let mut device = BusyboxDevice::start(profile);
        let dir = tempfile::tempdir().unwrap();
        let rig = device.write_rig(dir.path());
        let rig_text = std::fs::read_to_string(&rig).unwrap();
        for secret in [device.root_password(), device.operator_password()] {
            assert!(!rig_text.contains(secret), "secrets are referenced, never inline:\n{rig_text}");
        }
        let rig = rig.display().to_string();
        let transcripts = dir.path().join("sessions");

        let out = proofrig_at(&device, &transcripts, &["rig", "check", &rig]);
        assert_eq!(out.status.code(), Some(0), "{profile:?}: {}\n{rig_text}", all(&out));

        let out = proofrig_at(&device, &transcripts, &["rig", "probe", &rig]);
        let table = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(out.status.code(), Some(0), "{profile:?}: {}", all(&out));
        for channel in ["console", "ssh", "power"] {
            assert!(up(&table, "ru-bb", channel), "{profile:?}: {channel} is not up:\n{table}");
        }

        // The rig's SSH user runs a command; the device's userland is BusyBox.
        let out = proofrig_at(&device, &transcripts, &["ssh", &rig, "ru-bb", "--", "id -un; readlink /bin/ls"]);
        assert_eq!(out.status.code(), Some(0), "{profile:?}: {}", all(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("oper") && stdout.contains("/bin/busybox"), "{stdout}");

        // Power through the bridged Modbus PDU: off cuts the device, on boots it again.
        let out = proofrig_at(&device, &transcripts, &["power", &rig, "ru-bb", "off"]);
        assert_eq!(out.status.code(), Some(0), "{profile:?}: {}", all(&out));
        assert!(!device.is_powered(), "{profile:?}: coil off stops every process of the device");
        let out = proofrig_at(&device, &transcripts, &["rig", "probe", &rig]);
        let table = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(out.status.code(), Some(1), "{profile:?}: SSH is down while the power is off: {}", all(&out));
        assert!(!up(&table, "ru-bb", "ssh") && up(&table, "ru-bb", "power"), "{table}");
        let out = proofrig_at(&device, &transcripts, &["power", &rig, "ru-bb", "on"]);
        assert_eq!(out.status.code(), Some(0), "{profile:?}: {}", all(&out));
        device.wait_until_booted(Duration::from_secs(5));
        let out = proofrig_at(&device, &transcripts, &["ssh", &rig, "ru-bb", "--", "true"]);
        assert_eq!(out.status.code(), Some(0), "{profile:?}: SSH is back after power-on: {}", all(&out));
        device.power_on();
    }
}
