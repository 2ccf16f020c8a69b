//! What the expect engine assumes of a console the rig says nothing about: the shell,
//! login and password prompts it waits for, what a refused login looks like, and how
//! much unread text it keeps to match in; and whose shell a prompt names. The engine
//! (`proofrig_agents::expect`) waits with these on the live console; `verify` rebuilds
//! what the engine read with the same values, so a recorded wait is judged by the
//! pattern the engine used.

/// Default size of the matching window.
pub const DEFAULT_WINDOW: usize = 64 * 1024;
/// Shell prompt when the rig gives none.
pub const DEFAULT_PROMPT: &str = r"[#$] ?$";
/// Login prompt when the rig gives none.
pub const DEFAULT_LOGIN_PROMPT: &str = r"login: ?$";
/// Password prompt when the rig gives none.
pub const DEFAULT_PASSWORD_PROMPT: &str = r"[Pp]assword: ?$";
/// What a refused login looks like when the rig does not say.
pub const DEFAULT_LOGIN_FAILURE: &str = r"Login incorrect|Permission denied|Authentication failure";
/// How many shells a console login logs out (`exit`) before it gives up: a console that
/// still shows a shell after that many is one nobody can log out of.
pub const MAX_LOGOUTS: usize = 3;

/// The account a shell prompt names, `user@host...` as most shells show it.
pub fn account_of_prompt(prompt: &str) -> Option<String> {
    let (user, _) = prompt.split_once('@')?;
    let user = user.rsplit(|c: char| c.is_whitespace() || c == '[' || c == '(').next()?;
    let valid = !user.is_empty() && user.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    valid.then(|| user.to_string())
}
