//! What a bench run can be told through the environment (sizes, rounds), read the
//! same way by every bench: a value that is not a number stops the bench and says so,
//! rather than running a different measurement than asked.

/// The number in the environment variable `name`, or `default` when it is not set.
pub fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(text) => text.parse().unwrap_or_else(|_| panic!("{name}={text:?} is not a number")),
        Err(_) => default,
    }
}
