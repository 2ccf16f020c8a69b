//! `proofrig keygen`: make the lab's signing key, the one thing a verifier has to trust.

use std::path::Path;

use super::{report, Failure, EXIT_OK};
use proofrig_evidence::signing::{self, KeyError};

pub fn keygen(out: &Path, name: &str) -> Result<u8, Failure> {
    if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
        return Err(Failure::usage(miette::miette!(
            help = "give a plain name such as `lab` or `lab-2026`",
            "`{name}` cannot name a key file"
        )));
    }
    if !out.exists() {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(out)
            .map_err(|e| Failure::failed(miette::miette!("cannot create {}: {e}", out.display())))?;
    }
    let private = out.join(format!("{name}.key"));
    let public = out.join(format!("{name}.pub"));
    let key = signing::generate(&private, &public).map_err(|err| match err {
        KeyError::Exists { .. } => Failure::failed(miette::miette!(
            help = "pick another --name, or move the old key away if you really mean to replace it (bundles it signed then need the old .pub to verify)",
            "{err}"
        )),
        other => Failure::failed(report(other)),
    })?;
    println!("wrote {} (private key, mode 0600: keep it on the machine that runs the tests)", private.display());
    println!("wrote {} (public key: give it to whoever checks your bundles)", public.display());
    println!("key id: {}", signing::key_id(&key));
    println!();
    println!("Runs sealed with {} can be checked offline with:", private.display());
    println!("  proofrig verify results/<run-id> --key {}", public.display());
    Ok(EXIT_OK)
}
