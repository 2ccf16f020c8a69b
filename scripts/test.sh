#!/usr/bin/env bash
# The test command (README): installs the third-party peers the tests talk to when
# they are missing, checks formatting and lints, then runs the whole test suite.
# Tests never skip a missing peer; they fail and say what to install, so this script
# is the one place that installs.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh >/dev/null 2>&1 || need+=(openssh-client)
command -v ssh-keygen >/dev/null 2>&1 || need+=(openssh-client)
command -v ser2net >/dev/null 2>&1 || need+=(ser2net)
command -v socat >/dev/null 2>&1 || need+=(socat)
command -v pdudaemon >/dev/null 2>&1 || need+=(pdudaemon)
[ -x /usr/sbin/snmpd ] || need+=(snmpd)
[ -x /bin/busybox ] || need+=(busybox-static)
[ -x /usr/sbin/dropbear ] || need+=(dropbear-bin)
command -v dropbearkey >/dev/null 2>&1 || need+=(dropbear-bin)
command -v ssh-audit >/dev/null 2>&1 || need+=(ssh-audit)
[ -x /usr/sbin/nginx ] || need+=(nginx-light)
# The lighttpd host (crates/testpeers/src/lighttpd_host.rs): SSI with an exec nginx lacks
# (4.3.4.7). Its postinst may try to start the service; without an init that is refused
# harmlessly, and no test uses the system service.
[ -x /usr/sbin/lighttpd ] || need+=(lighttpd)
[ -x /usr/sbin/rsyslogd ] || need+=(rsyslog)
ls /usr/lib/*-linux-gnu/rsyslog/lmnsd_gtls.so >/dev/null 2>&1 || need+=(rsyslog-gnutls)
# The TLS cases: certificates for nginx's HTTPS, and s_client/s_server to cross-check the auditor.
[ -x /usr/bin/openssl ] || need+=(openssl)
# The web host (crates/testpeers/src/web_host.rs): Debian's dynamic echo module as the
# careless host's unneeded add-on, and perl copied into its CGI directory.
[ -e /etc/nginx/modules-enabled/50-mod-http-echo.conf ] || need+=(libnginx-mod-http-echo)
[ -x /usr/bin/perl ] || need+=(perl-base)
# 4.3.3.1.5's ELF reader is checked against binutils' readelf, and a program is built
# carelessly and hardened with the C compiler (Rust's own linking needs it anyway).
command -v readelf >/dev/null 2>&1 || need+=(binutils)
command -v cc >/dev/null 2>&1 || need+=(gcc)
command -v unshare >/dev/null 2>&1 || need+=(util-linux)
command -v nsenter >/dev/null 2>&1 || need+=(util-linux)
[ -x /sbin/ip ] || need+=(iproute2)
command -v ss >/dev/null 2>&1 || need+=(iproute2)
command -v ps >/dev/null 2>&1 || need+=(procps)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
ls /usr/lib/*-linux-gnu/security/pam_faillock.so >/dev/null 2>&1 || need+=(libpam-modules)
# The sshd peer whose passwd enforces a password policy (4.2.3.4.3.1). Its postinst adds
# pam_pwquality to the machine's common-password (pam-auth-update); the peer itself
# uses a passwd stack of its own, and no test changes a password of the machine.
ls /usr/lib/*-linux-gnu/security/pam_pwquality.so >/dev/null 2>&1 || need+=(libpam-pwquality)
# The dashboard's browser tests: Debian's Chromium over its WebDriver, with a font to render.
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -x /usr/bin/chromedriver ] || need+=(chromium-driver)
[ -d /usr/share/fonts/truetype/liberation ] || need+=(fonts-liberation)

if [ ${#need[@]} -gt 0 ]; then
    echo "test peers missing: ${need[*]}; installing them with apt-get" >&2
    if [ "$(id -u)" -ne 0 ]; then
        SUDO=sudo
    else
        SUDO=
    fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

# The code's shape is part of the suite: formatted as rustfmt.toml says, and clippy
# clean on every target with warnings as errors. Both fail before a long test run.
command -v rustfmt >/dev/null 2>&1 || rustup component add rustfmt
cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings

# --no-fail-fast: one failing test binary does not hide what the others would say.
exec cargo test --workspace --locked --no-fail-fast "$@"
