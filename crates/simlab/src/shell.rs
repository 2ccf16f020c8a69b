//! The device's tiny POSIX-ish shell: just enough for security test plans.
//!
//! Language: words with single quotes, double quotes and backslash escapes; `#`
//! comments; lists with `;`, `&&`, `||` and newlines; pipelines with `|`;
//! redirections `>FILE`, `>>FILE`, `2>FILE`, `2>&1`, `<FILE`. No variables, globs
//! or subshells. The root file system is read-only, so output redirection only
//! works to `/dev/null`.
//!
//! Commands: `id [USER]`, `whoami`, `hostname`, `uname [-asnrvmo]`, `echo [-n]`,
//! `true`, `false`, `exit [N]`, `pwd`, `cat [FILE...]`, `ls [-l] [-d] [PATH...]`,
//! `stat [-c FORMAT] PATH...`, `ss -l[t][u]n[p]`, `grep [-cEFivqn] [-e] PATTERN
//! [FILE...]`, `head`/`tail [-n N] [FILE...]`, `wc [-lwc] [FILE...]`,
//! `passwd --stdin USER` (new password is the first line of standard input),
//! `find PATH... [-perm MODE] [-user NAME] [-type f|d]`, `sudo -n COMMAND...`,
//! `kill -0 PID...` (may the caller signal it: nothing is sent),
//! `sleep N`. Anything else is `sh: CMD: not found` with status 127, like busybox.

use std::time::{Duration, SystemTime};

use crate::device_os::{Account, CommandOutput, Content, DeviceOs, DeviceState, Node, NodeKind, ROOT_UID};
use crate::programs::genuine_package;

/// The device's way to run commands, here beside the interpreter so that the shell
/// imports the device's state and not the other way round.
impl DeviceOs {
    /// Runs one command line as `user` with `stdin` as the shell's standard input.
    ///
    /// The language: quotes, `\` escapes, `#` comments, `;` `&&` `||` lists, `|`
    /// pipes, `>`/`2>`/`2>&1`/`<` redirections (output only to `/dev/null`: the
    /// root file system is read-only). The commands: `id [USER]`, `whoami`,
    /// `hostname`, `uname [-asnrvmo]`, `echo [-n]`, `true`, `false`, `exit [N]`,
    /// `pwd`, `cat [FILE...]`, `ls [-l] [-d] [PATH...]`, `stat [-c FORMAT] PATH...`,
    /// `ss -l[t][u]n[p]`, `grep [-cEFivqn] [-e] PATTERN [FILE...]`, `head`/`tail
    /// [-n N] [FILE...]`, `wc [-lwc] [FILE...]`, `passwd --stdin [USER]` (new
    /// password = first line of stdin;
    /// refused with status 1 and `passwd: BAD PASSWORD: ...` when the profile's
    /// policy rejects it) and `sleep N`. Anything else: `sh: CMD: not found`, 127.
    /// Files are permission-checked against `user`.
    pub async fn run(&self, user: &str, command_line: &str, stdin: &str) -> CommandOutput {
        run_line(self, &Caller { user, shell_pid: None }, command_line, stdin).await
    }

    /// Runs one command line in the login session whose shell is process `shell_pid`
    /// (see [`DeviceOs::open_session`]): `$$` is that pid, and `ps` lists that shell.
    pub async fn run_in_session(&self, user: &str, shell_pid: u32, command_line: &str, stdin: &str) -> CommandOutput {
        run_line(self, &Caller { user, shell_pid: Some(shell_pid) }, command_line, stdin).await
    }

    /// Whether `command_line` reads its standard input, so a front end knows to
    /// collect stdin (until EOF) before running it.
    pub fn reads_stdin(&self, command_line: &str) -> bool {
        reads_stdin(command_line)
    }
}

/// Who runs a command line: the account, and the shell process of its login session
/// (none: a shell of its own that `ps` shows as pid [`OWN_SHELL_PID`]).
pub(crate) struct Caller<'a> {
    pub user: &'a str,
    pub shell_pid: Option<u32>,
}

/// The pid `ps` and `$$` give a command line run outside any registered session.
const OWN_SHELL_PID: u32 = 1001;

/// Runs a command line as `caller`; `stdin` goes to the first command that reads it.
pub(crate) async fn run_line(os: &DeviceOs, caller: &Caller<'_>, line: &str, stdin: &str) -> CommandOutput {
    let user = caller.user;
    let shell_pid = caller.shell_pid.unwrap_or(OWN_SHELL_PID);
    let mut out = CommandOutput::default();
    let list = match parse(line) {
        Ok(list) => list,
        Err(message) => {
            out.stderr = format!("sh: syntax error: {message}\n");
            out.status = 2;
            return out;
        }
    };
    let mut stdin = Some(stdin.to_string());
    for (connector, pipeline) in list {
        let run = match connector {
            Connector::Always => true,
            Connector::IfSuccess => out.status == 0,
            Connector::IfFailure => out.status != 0,
        };
        if !run {
            continue;
        }
        // `$?` is the status of the command before, known only now.
        let pipeline: Pipeline = pipeline.into_iter().map(|c| with_status(c, out.status, shell_pid)).collect();
        if let [command] = pipeline.as_slice() {
            if command.words.first().map(String::as_str) == Some("exit") {
                match command.words.get(1) {
                    None => {}
                    Some(code) => match code.parse::<i64>() {
                        Ok(code) => out.status = (code & 0xff) as u8,
                        Err(_) => {
                            out.stderr.push_str(&format!("sh: exit: Illegal number: {code}\n"));
                            out.status = 2;
                        }
                    },
                }
                out.exit_requested = true;
                return out;
            }
        }
        let mut piped: Option<String> = None;
        for command in &pipeline {
            let input = match piped.take() {
                Some(previous) => previous,
                None if reads_stdin_words(&command.words) => stdin.take().unwrap_or_default(),
                None => String::new(),
            };
            let result = run_command(os, user, shell_pid, command, input).await;
            out.stderr.push_str(&result.stderr);
            out.status = result.status;
            piped = Some(result.stdout);
        }
        out.stdout.push_str(&piped.unwrap_or_default());
    }
    out
}

/// Stands for `$?` in a parsed word until the command runs.
const LAST_STATUS: char = '\u{1}';
/// Stands for `$$`, the shell's process id.
const SHELL_PID: char = '\u{2}';

fn with_status(mut command: Command, status: u8, shell_pid: u32) -> Command {
    for word in &mut command.words {
        if word.contains(LAST_STATUS) {
            *word = word.replace(LAST_STATUS, &status.to_string());
        }
        if word.contains(SHELL_PID) {
            *word = word.replace(SHELL_PID, &shell_pid.to_string());
        }
    }
    command
}

/// Whether any pipeline of `line` starts with a command that reads standard input.
pub(crate) fn reads_stdin(line: &str) -> bool {
    parse(line).is_ok_and(|list| {
        list.iter().any(|(_, pipeline)| pipeline.first().is_some_and(|c| c.stdin_file.is_none() && reads_stdin_words(&c.words)))
    })
}

fn reads_stdin_words(words: &[String]) -> bool {
    match words.first().map(String::as_str) {
        Some("cat") => words.len() == 1,
        Some("passwd") => words.iter().any(|w| w == "--stdin"),
        Some("grep") => GrepArgs::parse(&words[1..]).is_ok_and(|g| g.files.is_empty() || g.pattern_files.iter().any(|f| f == "-")),
        Some("head" | "tail") => LineArgs::parse(&words[1..]).is_ok_and(|a| a.files.is_empty()),
        Some("wc") => WcArgs::parse(&words[1..]).is_ok_and(|a| a.files.is_empty()),
        _ => false,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Connector {
    Always,
    IfSuccess,
    IfFailure,
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Command {
    words: Vec<String>,
    stdout_file: Option<String>,
    stderr_file: Option<String>,
    stderr_to_stdout: bool,
    stdin_file: Option<String>,
}

type Pipeline = Vec<Command>;

#[derive(Debug, PartialEq, Eq)]
enum Token {
    Word(String),
    Pipe,
    And,
    Or,
    Separator,
    RedirectOut { fd: u8 },
    RedirectIn,
    StderrToStdout,
}

fn tokenize(line: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = line.chars().peekable();
    let mut word = String::new();
    let mut in_word = false;
    let mut quoted = false;
    let flush = |tokens: &mut Vec<Token>, word: &mut String, in_word: &mut bool, quoted: &mut bool| {
        if *in_word {
            tokens.push(Token::Word(std::mem::take(word)));
        }
        *in_word = false;
        *quoted = false;
    };
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                quoted = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("unterminated quoted string".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                quoted = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err("unterminated quoted string".into()),
                        },
                        Some('$') if chars.peek() == Some(&'?') => {
                            chars.next();
                            word.push(LAST_STATUS);
                        }
                        Some('$') if chars.peek() == Some(&'$') => {
                            chars.next();
                            word.push(SHELL_PID);
                        }
                        Some(c) => word.push(c),
                        None => return Err("unterminated quoted string".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('\n') | None => {}
                    Some(c) => word.push(c),
                }
            }
            '#' if !in_word => for _ in chars.by_ref() {},
            ' ' | '\t' => flush(&mut tokens, &mut word, &mut in_word, &mut quoted),
            ';' | '\n' | '&' => {
                flush(&mut tokens, &mut word, &mut in_word, &mut quoted);
                if c == '&' && chars.peek() == Some(&'&') {
                    chars.next();
                    tokens.push(Token::And);
                } else {
                    // A lone `&` would start a background job; run it in the
                    // foreground instead, which is all a test plan can observe.
                    tokens.push(Token::Separator);
                }
            }
            '|' => {
                flush(&mut tokens, &mut word, &mut in_word, &mut quoted);
                if chars.peek() == Some(&'|') {
                    chars.next();
                    tokens.push(Token::Or);
                } else {
                    tokens.push(Token::Pipe);
                }
            }
            '>' => {
                let fd = if in_word && !quoted && word == "2" {
                    word.clear();
                    in_word = false;
                    2
                } else {
                    flush(&mut tokens, &mut word, &mut in_word, &mut quoted);
                    1
                };
                if chars.peek() == Some(&'>') {
                    // Appending and truncating are the same on a read-only fs.
                    chars.next();
                }
                if chars.peek() == Some(&'&') {
                    chars.next();
                    match (fd, chars.next()) {
                        (2, Some('1')) => tokens.push(Token::StderrToStdout),
                        (1, Some('2')) => return Err("redirecting stdout to stderr is not supported".into()),
                        _ => return Err("unsupported file descriptor duplication".into()),
                    }
                } else {
                    tokens.push(Token::RedirectOut { fd });
                }
            }
            '<' => {
                flush(&mut tokens, &mut word, &mut in_word, &mut quoted);
                tokens.push(Token::RedirectIn);
            }
            '$' if chars.peek() == Some(&'?') => {
                chars.next();
                in_word = true;
                word.push(LAST_STATUS);
            }
            '$' if chars.peek() == Some(&'$') => {
                chars.next();
                in_word = true;
                word.push(SHELL_PID);
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    flush(&mut tokens, &mut word, &mut in_word, &mut quoted);
    Ok(tokens)
}

fn parse(line: &str) -> Result<Vec<(Connector, Pipeline)>, String> {
    let mut list: Vec<(Connector, Pipeline)> = Vec::new();
    let mut connector = Connector::Always;
    let mut pipeline: Pipeline = Vec::new();
    let mut command = Command::default();
    let mut tokens = tokenize(line)?.into_iter();
    let end_command = |pipeline: &mut Pipeline, command: &mut Command, token: &str| {
        if command.words.is_empty() {
            return Err(format!("unexpected {token}"));
        }
        pipeline.push(std::mem::take(command));
        Ok(())
    };
    while let Some(token) = tokens.next() {
        match token {
            Token::Word(word) => command.words.push(word),
            Token::Pipe => end_command(&mut pipeline, &mut command, "|")?,
            Token::And | Token::Or | Token::Separator => {
                let name = match token {
                    Token::And => "&&",
                    Token::Or => "||",
                    _ => ";",
                };
                if command.words.is_empty() && pipeline.is_empty() {
                    if token == Token::Separator {
                        continue;
                    }
                    return Err(format!("unexpected {name}"));
                }
                end_command(&mut pipeline, &mut command, name)?;
                list.push((connector, std::mem::take(&mut pipeline)));
                connector = match token {
                    Token::And => Connector::IfSuccess,
                    Token::Or => Connector::IfFailure,
                    _ => Connector::Always,
                };
            }
            Token::RedirectOut { fd } => match tokens.next() {
                Some(Token::Word(target)) if fd == 2 => command.stderr_file = Some(target),
                Some(Token::Word(target)) => command.stdout_file = Some(target),
                _ => return Err("missing redirection target".into()),
            },
            Token::RedirectIn => match tokens.next() {
                Some(Token::Word(source)) => command.stdin_file = Some(source),
                _ => return Err("missing redirection source".into()),
            },
            Token::StderrToStdout => command.stderr_to_stdout = true,
        }
    }
    if !command.words.is_empty() {
        pipeline.push(command);
    } else if !pipeline.is_empty() {
        return Err("unexpected end of line after |".into());
    }
    if !pipeline.is_empty() {
        list.push((connector, pipeline));
    } else if connector != Connector::Always {
        return Err("unexpected end of line".into());
    }
    Ok(list)
}

struct Output {
    stdout: String,
    stderr: String,
    status: u8,
}

impl Output {
    fn ok(stdout: String) -> Self {
        Output { stdout, stderr: String::new(), status: 0 }
    }

    fn fail(stderr: String, status: u8) -> Self {
        Output { stdout: String::new(), stderr, status }
    }
}

async fn run_command(os: &DeviceOs, user: &str, shell_pid: u32, command: &Command, mut input: String) -> Output {
    if let Some(source) = &command.stdin_file {
        let state = os.lock();
        let Some(account) = state.accounts.get(user).cloned() else {
            return Output::fail(format!("sh: unknown user {user}\n"), 1);
        };
        match read_file(&state, &account, source) {
            Ok(text) => input = text,
            Err(error) => return Output::fail(format!("sh: can't open {source}: {error}\n"), 1),
        }
    }
    for target in [&command.stdout_file, &command.stderr_file].into_iter().flatten() {
        if target != "/dev/null" {
            return Output::fail(format!("sh: can't create {target}: Read-only file system\n"), 1);
        }
    }
    let mut output = match command.words.first().map(String::as_str) {
        Some("sleep") => sleep(&command.words[1..]).await,
        _ => {
            let mut state = os.lock();
            match state.accounts.get(user).cloned() {
                Some(account) => builtin(&mut state, &account, shell_pid, &command.words, &input),
                None => Output::fail(format!("sh: unknown user {user}\n"), 1),
            }
        }
    };
    if command.stderr_to_stdout {
        let stderr = std::mem::take(&mut output.stderr);
        output.stdout.push_str(&stderr);
    }
    if command.stdout_file.is_some() {
        output.stdout.clear();
    }
    if command.stderr_file.is_some() {
        output.stderr.clear();
    }
    output
}

async fn sleep(args: &[String]) -> Output {
    let [seconds] = args else {
        return Output::fail("sleep: usage: sleep SECONDS\n".into(), 1);
    };
    match seconds.parse::<f64>() {
        Ok(s) if s.is_finite() && s >= 0.0 => {
            tokio::time::sleep(Duration::from_secs_f64(s)).await;
            Output::ok(String::new())
        }
        _ => Output::fail(format!("sleep: invalid number '{seconds}'\n"), 1),
    }
}

fn builtin(state: &mut DeviceState, account: &Account, shell_pid: u32, words: &[String], input: &str) -> Output {
    let args = &words[1..];
    match words[0].as_str() {
        "true" => Output::ok(String::new()),
        // `exit` inside a pipeline ends only its own subshell.
        "exit" => match args.first().map(|code| code.parse::<i64>()) {
            None => Output::ok(String::new()),
            Some(Ok(code)) => Output::fail(String::new(), (code & 0xff) as u8),
            Some(Err(_)) => Output::fail("sh: exit: Illegal number\n".into(), 2),
        },
        "false" => Output::fail(String::new(), 1),
        "echo" => echo(args),
        "whoami" => Output::ok(format!("{}\n", account.name)),
        "hostname" => Output::ok(format!("{}\n", state.hostname)),
        "pwd" => Output::ok(format!("{}\n", account.home)),
        "id" => id(state, account, args),
        "uname" => uname(state, args),
        "cat" => cat(state, account, args, input),
        "od" => od(state, account, args),
        "cmp" => cmp(state, account, args),
        "fw-install" => fw_install(state, account, args),
        "ls" => ls(state, account, args),
        "stat" => stat(state, account, args),
        "ss" => ss(state, account, args),
        "ps" => ps(state, account, shell_pid, args),
        "grep" => grep(state, account, args, input),
        "head" => head_tail(state, account, "head", args, input),
        "tail" => head_tail(state, account, "tail", args, input),
        "wc" => wc(state, account, args, input),
        "passwd" => passwd(state, account, args, input),
        "find" => find(state, account, args),
        "sudo" => sudo(state, account, shell_pid, args, input),
        "kill" => kill(state, account, shell_pid, args),
        other => Output::fail(format!("sh: {other}: not found\n"), 127),
    }
}

fn echo(args: &[String]) -> Output {
    let (newline, args) = match args.first().map(String::as_str) {
        Some("-n") => (false, &args[1..]),
        _ => (true, args),
    };
    let mut text = args.join(" ");
    if newline {
        text.push('\n');
    }
    Output::ok(text)
}

fn id(state: &DeviceState, account: &Account, args: &[String]) -> Output {
    // `-u` / `-g` (with `-n` for the name), as GNU and BusyBox `id` give them.
    let flags: Vec<&str> = args.iter().map(String::as_str).filter(|a| a.starts_with('-')).collect();
    if !flags.is_empty() {
        return id_field(state, account, args, &flags);
    }
    let target = match args {
        [] => account,
        [name] => match state.accounts.get(name) {
            Some(other) => other,
            None => return Output::fail(format!("id: '{name}': no such user\n"), 1),
        },
        _ => return Output::fail("id: extra operand\n".into(), 1),
    };
    let name_of = |gid: u32| state.group_of(gid).map_or(gid.to_string(), |g| g.name.clone());
    let groups = state.gids_of(target).iter().map(|gid| format!("{gid}({})", name_of(*gid))).collect::<Vec<_>>().join(",");
    Output::ok(format!("uid={}({}) gid={}({}) groups={groups}\n", target.uid, target.name, target.gid, name_of(target.gid)))
}

fn id_field(state: &DeviceState, account: &Account, args: &[String], flags: &[&str]) -> Output {
    let names: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let letters: String = flags.iter().flat_map(|f| f.chars().skip(1)).collect();
    let target = match names.as_slice() {
        [] => account,
        [name] => match state.accounts.get(name.as_str()) {
            Some(other) => other,
            None => return Output::fail(format!("id: '{name}': no such user\n"), 1),
        },
        _ => return Output::fail("id: extra operand\n".into(), 1),
    };
    let group_name = |gid: u32| state.group_of(gid).map_or(gid.to_string(), |g| g.name.clone());
    let by_name = letters.contains('n');
    match letters.replace('n', "").as_str() {
        "u" if by_name => Output::ok(format!("{}\n", target.name)),
        "u" => Output::ok(format!("{}\n", target.uid)),
        "g" if by_name => Output::ok(format!("{}\n", group_name(target.gid))),
        "g" => Output::ok(format!("{}\n", target.gid)),
        _ => Output::fail(format!("id: invalid option -- '{letters}'\n"), 1),
    }
}

const KERNEL_RELEASE: &str = "5.10.184-proofrig-sim";
const MACHINE: &str = "aarch64";

fn uname(state: &DeviceState, args: &[String]) -> Output {
    let version = format!("#1 SMP PREEMPT {} {} firmware {}", state.identity.vendor, state.identity.model, state.identity.firmware);
    let all: [(char, String); 6] = [
        ('s', "Linux".into()),
        ('n', state.hostname.clone()),
        ('r', KERNEL_RELEASE.into()),
        ('v', version),
        ('m', MACHINE.into()),
        ('o', "GNU/Linux".into()),
    ];
    let mut wanted = Vec::new();
    for arg in args {
        let Some(flags) = arg.strip_prefix('-') else {
            return Output::fail(format!("uname: extra operand '{arg}'\n"), 1);
        };
        for flag in flags.chars() {
            match flag {
                'a' => wanted.extend(all.iter().map(|(f, _)| *f)),
                f if all.iter().any(|(known, _)| *known == f) => wanted.push(f),
                f => return Output::fail(format!("uname: invalid option -- '{f}'\n"), 1),
            }
        }
    }
    if wanted.is_empty() {
        wanted.push('s');
    }
    let fields: Vec<&str> = all.iter().filter(|(flag, _)| wanted.contains(flag)).map(|(_, value)| value.as_str()).collect();
    Output::ok(format!("{}\n", fields.join(" ")))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FsError {
    NotFound,
    PermissionDenied,
    NotADirectory,
    IsADirectory,
}

impl std::fmt::Display for FsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FsError::NotFound => "No such file or directory",
            FsError::PermissionDenied => "Permission denied",
            FsError::NotADirectory => "Not a directory",
            FsError::IsADirectory => "Is a directory",
        })
    }
}

/// `path` made absolute (relative to the home directory) with `.`/`..` resolved.
fn normalize(account: &Account, path: &str) -> String {
    let joined = if path.starts_with('/') { path.to_string() } else { format!("{}/{path}", account.home) };
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    format!("/{}", parts.join("/"))
}

const READ: u16 = 4;
const EXECUTE: u16 = 1;

/// Whether `account` has `permission` (READ/EXECUTE bit) on `node`.
fn permitted(state: &DeviceState, account: &Account, node: &Node, permission: u16) -> bool {
    if account.uid == ROOT_UID {
        return true;
    }
    let shift = if node.owner == account.name {
        6
    } else if state.group_named(&node.group).is_some_and(|g| state.gids_of(account).contains(&g.gid)) {
        3
    } else {
        0
    };
    (node.mode >> shift) & permission != 0
}

/// The node at absolute `path`, if every ancestor directory may be searched.
fn lookup<'a>(state: &'a DeviceState, account: &Account, path: &str) -> Result<&'a Node, FsError> {
    let mut ancestor = String::new();
    let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    for component in components.iter().take(components.len().saturating_sub(1)) {
        ancestor.push('/');
        ancestor.push_str(component);
        let dir = state.files.get(&ancestor).ok_or(FsError::NotFound)?;
        if !matches!(dir.kind, NodeKind::Directory) {
            return Err(FsError::NotADirectory);
        }
        if !permitted(state, account, dir, EXECUTE) {
            return Err(FsError::PermissionDenied);
        }
    }
    let root = state.files.get("/").ok_or(FsError::NotFound)?;
    if !components.is_empty() && !permitted(state, account, root, EXECUTE) {
        return Err(FsError::PermissionDenied);
    }
    state.files.get(path).ok_or(FsError::NotFound)
}

fn read_file(state: &DeviceState, account: &Account, path: &str) -> Result<String, FsError> {
    readable(state, account, path).map(|content| state.render(content))
}

/// A file's bytes: a program's as they are, any other file's text.
fn read_bytes(state: &DeviceState, account: &Account, path: &str) -> Result<Vec<u8>, FsError> {
    readable(state, account, path).map(|content| match content {
        Content::Binary(bytes) => bytes.clone(),
        text => state.render(text).into_bytes(),
    })
}

fn readable<'s>(state: &'s DeviceState, account: &Account, path: &str) -> Result<&'s Content, FsError> {
    let node = lookup(state, account, &normalize(account, path))?;
    let NodeKind::File(content) = &node.kind else {
        return Err(FsError::IsADirectory);
    };
    if !permitted(state, account, node, READ) {
        return Err(FsError::PermissionDenied);
    }
    Ok(content)
}

/// `cmp -l FILE1 FILE2`, the form the plans use, as GNU prints it: every differing byte
/// as its 1-based offset and both values in octal.
fn cmp(state: &DeviceState, account: &Account, args: &[String]) -> Output {
    let [flag, a, b] = args else {
        return Output::fail("cmp: this device compares only as `cmp -l FILE1 FILE2`\n".into(), 2);
    };
    if flag != "-l" {
        return Output::fail(format!("cmp: option '{flag}' is not supported by this device\n"), 2);
    }
    let files = [a, b];
    let mut contents = Vec::new();
    for path in &files {
        match read_bytes(state, account, path) {
            Ok(bytes) => contents.push(bytes),
            Err(error) => return Output::fail(format!("cmp: {path}: {error}\n"), 2),
        }
    }
    let (a, b) = (&contents[0], &contents[1]);
    let differing: Vec<usize> = a.iter().zip(b.iter()).enumerate().filter(|(_, (x, y))| x != y).map(|(i, _)| i).collect();
    let mut out = Output::ok(String::new());
    // GNU pads the offsets to the width of the files' size.
    let width = a.len().min(b.len()).to_string().len();
    for i in &differing {
        out.stdout.push_str(&format!("{:width$} {:3o} {:3o}\n", i + 1, a[*i], b[*i]));
    }
    if a.len() != b.len() {
        let shorter = if a.len() < b.len() { files[0] } else { files[1] };
        out.stderr.push_str(&format!("cmp: EOF on {shorter} after byte {}\n", a.len().min(b.len())));
    }
    if !differing.is_empty() || a.len() != b.len() {
        out.status = 1;
    }
    out
}

/// `fw-install PACKAGE`: the device's firmware installer. A hardened device checks the
/// package against the vendor's release key (simulated: only the genuine package's
/// bytes pass) and refuses anything else; a weak one installs whatever it is given.
fn fw_install(state: &DeviceState, account: &Account, args: &[String]) -> Output {
    let [path] = args else {
        return Output::fail("usage: fw-install PACKAGE\n".into(), 2);
    };
    let bytes = match read_bytes(state, account, path) {
        Ok(bytes) => bytes,
        Err(error) => return Output::fail(format!("fw-install: {path}: {error}\n"), 2),
    };
    if state.profile.verifies_packages() {
        if bytes != genuine_package() {
            return Output::fail(
                format!("fw-install: {path}: signature verification failed (RU vendor release key): package rejected\n"),
                3,
            );
        }
        return Output::ok(format!(
            "fw-install: {path}: signature verified (RU vendor release key)\nfw-install: firmware 4.2.1 installed\n"
        ));
    }
    Output::ok(format!("fw-install: {path}: firmware 4.2.1 installed\n"))
}

/// `od -An -v -tx1 [-j SKIP] [-N COUNT] FILE`, the one form the plans use to read a
/// program's headers: every byte as two hex digits, 16 a line, no address column.
fn od(state: &DeviceState, account: &Account, args: &[String]) -> Output {
    let (mut skip, mut count, mut file, mut form) = (0usize, None, None, Vec::new());
    let mut words = args.iter();
    while let Some(word) = words.next() {
        let mut number = |flag: &str| -> Result<usize, Output> {
            let value = if word.len() > 2 { word[2..].to_string() } else { words.next().cloned().unwrap_or_default() };
            value.parse().map_err(|_| Output::fail(format!("od: invalid {flag} argument '{value}'\n"), 1))
        };
        match word.as_str() {
            "-An" | "-v" | "-tx1" => form.push(word.as_str()),
            w if w.starts_with("-j") => match number("-j") {
                Ok(n) => skip = n,
                Err(out) => return out,
            },
            w if w.starts_with("-N") => match number("-N") {
                Ok(n) => count = Some(n),
                Err(out) => return out,
            },
            w if w.starts_with('-') => return Output::fail(format!("od: option '{w}' is not supported by this device\n"), 1),
            path if file.is_none() => file = Some(path.to_string()),
            _ => return Output::fail("od: only one file is supported by this device\n".into(), 1),
        }
    }
    let (Some(path), ["-An", "-v", "-tx1"]) = (file, form.as_slice()) else {
        return Output::fail("od: this device prints only `od -An -v -tx1 [-j N] [-N N] FILE`\n".into(), 1);
    };
    let bytes = match read_bytes(state, account, &path) {
        Ok(bytes) => bytes,
        Err(error) => return Output::fail(format!("od: {path}: {error}\n"), 1),
    };
    if skip > bytes.len() {
        return Output::fail("od: cannot skip past end of combined input\n".into(), 1);
    }
    let end = count.map_or(bytes.len(), |n| bytes.len().min(skip + n));
    let mut out = String::new();
    for line in bytes[skip..end].chunks(16) {
        for byte in line {
            out.push_str(&format!(" {byte:02x}"));
        }
        out.push('\n');
    }
    Output::ok(out)
}

fn cat(state: &DeviceState, account: &Account, args: &[String], input: &str) -> Output {
    if args.is_empty() {
        return Output::ok(input.to_string());
    }
    let mut output = Output::ok(String::new());
    for path in args {
        match read_file(state, account, path) {
            Ok(text) => output.stdout.push_str(&text),
            Err(error) => {
                output.stderr.push_str(&format!("cat: {path}: {error}\n"));
                output.status = 1;
            }
        }
    }
    output
}

fn size_of(state: &DeviceState, node: &Node) -> usize {
    match &node.kind {
        NodeKind::Directory => 4096,
        NodeKind::File(content) => state.render(content).len(),
    }
}

fn symbolic_mode(node: &Node) -> String {
    let mode = node.mode;
    let mut text = String::with_capacity(10);
    text.push(if matches!(node.kind, NodeKind::Directory) { 'd' } else { '-' });
    for (shift, special, special_set, special_only) in [(6, 0o4000, 's', 'S'), (3, 0o2000, 's', 'S'), (0, 0o1000, 't', 'T')] {
        let bits = (mode >> shift) & 0o7;
        text.push(if bits & 4 != 0 { 'r' } else { '-' });
        text.push(if bits & 2 != 0 { 'w' } else { '-' });
        text.push(match (bits & 1 != 0, mode & special != 0) {
            (true, true) => special_set,
            (false, true) => special_only,
            (true, false) => 'x',
            (false, false) => '-',
        });
    }
    text
}

/// `Jan  2 03:04`, the `ls -l` date of recent files (UTC).
fn ls_date(time: SystemTime) -> String {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    // "2025-01-02T03:04:05Z"
    let stamp = humantime::format_rfc3339_seconds(time).to_string();
    let month: usize = stamp[5..7].parse().unwrap_or(1);
    let day: u32 = stamp[8..10].parse().unwrap_or(1);
    format!("{} {day:>2} {}", MONTHS[month.clamp(1, 12) - 1], &stamp[11..16])
}

fn uid_of(state: &DeviceState, name: &str) -> u32 {
    state.accounts.get(name).map_or(0, |a| a.uid)
}

fn gid_of(state: &DeviceState, name: &str) -> u32 {
    state.group_named(name).map_or(0, |g| g.gid)
}

fn link_count(state: &DeviceState, path: &str, node: &Node) -> usize {
    match node.kind {
        NodeKind::File(_) => 1,
        NodeKind::Directory => 2 + children(state, path).filter(|(_, child)| matches!(child.kind, NodeKind::Directory)).count(),
    }
}

fn children<'a>(state: &'a DeviceState, dir: &str) -> impl Iterator<Item = (&'a str, &'a Node)> {
    let prefix = if dir == "/" { "/".to_string() } else { format!("{dir}/") };
    state.files.iter().filter_map(move |(path, node)| {
        let rest = path.strip_prefix(&prefix)?;
        (!rest.is_empty() && !rest.contains('/')).then_some((rest, node))
    })
}

fn ls(state: &DeviceState, account: &Account, args: &[String]) -> Output {
    let mut long = false;
    let mut directory_itself = false;
    let mut paths = Vec::new();
    for arg in args {
        match arg.strip_prefix('-') {
            Some(flags) if !flags.is_empty() => {
                for flag in flags.chars() {
                    match flag {
                        'l' => long = true,
                        'd' => directory_itself = true,
                        'a' | 'h' | 'n' => {}
                        f => return Output::fail(format!("ls: invalid option -- '{f}'\n"), 2),
                    }
                }
            }
            _ => paths.push(arg.clone()),
        }
    }
    if paths.is_empty() {
        paths.push(".".to_string());
    }
    let entry = |name: &str, path: &str, node: &Node| {
        if long {
            format!(
                "{} {} {} {} {:>5} {} {name}\n",
                symbolic_mode(node),
                link_count(state, path, node),
                node.owner,
                node.group,
                size_of(state, node),
                ls_date(node.modified)
            )
        } else {
            format!("{name}\n")
        }
    };
    let mut output = Output::ok(String::new());
    let several = paths.len() > 1;
    for (index, path) in paths.iter().enumerate() {
        let absolute = normalize(account, path);
        let node = match lookup(state, account, &absolute) {
            Ok(node) => node,
            Err(error) => {
                output.stderr.push_str(&format!("ls: cannot access '{path}': {error}\n"));
                output.status = 2;
                continue;
            }
        };
        if directory_itself || matches!(node.kind, NodeKind::File(_)) {
            output.stdout.push_str(&entry(path, &absolute, node));
            continue;
        }
        if !permitted(state, account, node, READ) {
            output.stderr.push_str(&format!("ls: cannot open directory '{path}': Permission denied\n"));
            output.status = 2;
            continue;
        }
        if several {
            if index > 0 {
                output.stdout.push('\n');
            }
            output.stdout.push_str(&format!("{path}:\n"));
        }
        let listing: Vec<(&str, &Node)> = children(state, &absolute).collect();
        if long {
            output.stdout.push_str(&format!("total {}\n", listing.len() * 4));
        }
        for (name, child) in listing {
            let child_path = format!("{}/{name}", absolute.trim_end_matches('/'));
            output.stdout.push_str(&entry(name, &child_path, child));
        }
    }
    output
}

fn stat(state: &DeviceState, account: &Account, args: &[String]) -> Output {
    let mut format: Option<String> = None;
    let mut paths = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if arg == "-c" || arg == "--format" {
            match args.next() {
                Some(f) => format = Some(f.clone()),
                None => return Output::fail("stat: option requires an argument -- 'c'\n".into(), 1),
            }
        } else if let Some(f) = arg.strip_prefix("--format=") {
            format = Some(f.to_string());
        } else if let Some(f) = arg.strip_prefix("-c").filter(|f| !f.is_empty()) {
            format = Some(f.to_string());
        } else if arg.starts_with('-') && arg.len() > 1 {
            return Output::fail(format!("stat: unrecognized option '{arg}'\n"), 1);
        } else {
            paths.push(arg.clone());
        }
    }
    if paths.is_empty() {
        return Output::fail("stat: missing operand\n".into(), 1);
    }
    let mut output = Output::ok(String::new());
    for path in &paths {
        let absolute = normalize(account, path);
        let node = match lookup(state, account, &absolute) {
            Ok(node) => node,
            Err(error) => {
                output.stderr.push_str(&format!("stat: cannot statx '{path}': {error}\n"));
                output.status = 1;
                continue;
            }
        };
        let kind = match node.kind {
            NodeKind::Directory => "directory",
            NodeKind::File(_) => "regular file",
        };
        let line = match &format {
            Some(format) => {
                let mut line = String::new();
                let mut chars = format.chars();
                while let Some(c) = chars.next() {
                    if c != '%' {
                        line.push(c);
                        continue;
                    }
                    match chars.next() {
                        Some('a') => line.push_str(&format!("{:o}", node.mode & 0o7777)),
                        Some('A') => line.push_str(&symbolic_mode(node)),
                        Some('U') => line.push_str(&node.owner),
                        Some('G') => line.push_str(&node.group),
                        Some('u') => line.push_str(&uid_of(state, &node.owner).to_string()),
                        Some('g') => line.push_str(&gid_of(state, &node.group).to_string()),
                        Some('n') => line.push_str(path),
                        Some('s') => line.push_str(&size_of(state, node).to_string()),
                        Some('F') => line.push_str(kind),
                        Some('%') => line.push('%'),
                        Some(other) => {
                            line.push('?');
                            line.push(other);
                        }
                        None => line.push('%'),
                    }
                }
                line
            }
            None => format!(
                "  File: {path}\n  Size: {}\t{kind}\nAccess: ({:04o}/{})  Uid: ({:>5}/{:>8})   Gid: ({:>5}/{:>8})",
                size_of(state, node),
                node.mode & 0o7777,
                symbolic_mode(node),
                uid_of(state, &node.owner),
                node.owner,
                gid_of(state, &node.group),
                node.group
            ),
        };
        output.stdout.push_str(&line);
        output.stdout.push('\n');
    }
    output
}

fn ss(state: &DeviceState, account: &Account, args: &[String]) -> Output {
    let mut listening = false;
    let mut processes = false;
    let mut tcp = false;
    let mut udp = false;
    for arg in args {
        let Some(flags) = arg.strip_prefix('-') else {
            return Output::fail(format!("ss: filters are not supported: {arg}\n"), 1);
        };
        for flag in flags.chars() {
            match flag {
                'l' => listening = true,
                'p' => processes = true,
                't' => tcp = true,
                'u' => udp = true,
                'n' | '4' => {}
                f => return Output::fail(format!("ss: unsupported option -- '{f}'\n"), 1),
            }
        }
    }
    if !udp {
        tcp = true;
    }
    // Like ss, a Netid column only when more than one socket type is shown.
    let netid = tcp && udp;
    let column = |text: &str| {
        if netid {
            format!("{text:<6}")
        } else {
            String::new()
        }
    };
    let mut text = format!(
        "{}{:<6} {:<6} {:<6} {:<24} {:<24} Process\n",
        column("Netid"),
        "State",
        "Recv-Q",
        "Send-Q",
        "Local Address:Port",
        "Peer Address:Port"
    );
    let sockets = [(tcp, "tcp", "LISTEN", 128, &state.listeners), (udp, "udp", "UNCONN", 0, &state.udp_listeners)];
    for (shown, netid, socket_state, send_q, listeners) in sockets {
        if !(listening && shown) {
            continue;
        }
        for listener in listeners {
            let process =
                if processes && account.uid == ROOT_UID { format!("users:((\"{}\",pid=1,fd=3))", listener.program) } else { String::new() };
            text.push_str(&format!(
                "{}{:<6} {:<6} {:<6} {:<24} {:<24} {process}\n",
                column(netid),
                socket_state,
                0,
                send_q,
                listener.addr.to_string(),
                "0.0.0.0:*"
            ));
        }
    }
    Output::ok(text)
}

/// `ps [-e|-A] [-o pid,ppid,user,comm]`: the daemons started at boot, the login
/// sessions' shells, then the caller's shell (a child of `sshd` unless it is a session's)
/// and this `ps`, as procps and BusyBox list them.
fn ps(state: &DeviceState, account: &Account, shell_pid: u32, args: &[String]) -> Output {
    let mut columns = vec!["pid".to_string(), "user".to_string(), "comm".to_string()];
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-e" | "-A" | "ax" | "aux" | "-ef" => {}
            "-o" => match args.next() {
                Some(list) => columns = list.split(',').map(|c| c.trim().to_string()).collect(),
                None => return Output::fail("ps: option requires an argument -- 'o'\n".into(), 1),
            },
            other => return Output::fail(format!("ps: unsupported option '{other}'\n"), 1),
        }
    }
    if let Some(bad) = columns.iter().find(|c| !["pid", "ppid", "user", "comm", "args"].contains(&c.as_str())) {
        return Output::fail(format!("ps: bad -o argument '{bad}', supported arguments: pid,ppid,user,comm,args\n"), 1);
    }
    let own =
        crate::device_os::Process { pid: shell_pid, ppid: crate::device_os::SSHD_PID, user: account.name.clone(), program: "sh".into() };
    let shell = (!state.sessions.iter().any(|s| s.pid == shell_pid)).then_some(&own);
    let next = state.sessions.iter().map(|s| s.pid).chain([shell_pid]).max().unwrap_or(shell_pid) + 1;
    let itself = crate::device_os::Process { pid: next, ppid: shell_pid, user: account.name.clone(), program: "ps".into() };
    let mut text = String::new();
    let header: Vec<String> = columns
        .iter()
        .map(|c| match c.as_str() {
            "pid" => format!("{:>5}", "PID"),
            "ppid" => format!("{:>5}", "PPID"),
            "user" => format!("{:<8}", "USER"),
            _ => "COMMAND".to_string(),
        })
        .collect();
    text.push_str(header.join(" ").trim_end());
    text.push('\n');
    for process in state.processes.iter().chain(&state.sessions).chain(shell).chain([&itself]) {
        let cells: Vec<String> = columns
            .iter()
            .map(|c| match c.as_str() {
                "pid" => format!("{:>5}", process.pid),
                "ppid" => format!("{:>5}", process.ppid),
                "user" => format!("{:<8}", process.user),
                _ => process.program.clone(),
            })
            .collect();
        text.push_str(cells.join(" ").trim_end());
        text.push('\n');
    }
    Output::ok(text)
}

/// Text of each file operand (or standard input when there is none), with the
/// name to show for it; unreadable files become `name: error` messages.
fn inputs(state: &DeviceState, account: &Account, program: &str, files: &[String], input: &str) -> (Vec<(String, String)>, String) {
    if files.is_empty() {
        return (vec![("(standard input)".to_string(), input.to_string())], String::new());
    }
    let mut texts = Vec::new();
    let mut errors = String::new();
    for path in files {
        match read_file(state, account, path) {
            Ok(text) => texts.push((path.clone(), text)),
            Err(error) => errors.push_str(&format!("{program}: {path}: {error}\n")),
        }
    }
    (texts, errors)
}

/// The files a recursive `grep` reads for `operand`: the operand itself unless it is a
/// directory, else every file under it, in path order.
fn files_under(state: &DeviceState, account: &Account, operand: &str) -> Vec<String> {
    let path = normalize(account, operand);
    match state.files.get(&path) {
        Some(Node { kind: NodeKind::Directory, .. }) => {
            let prefix = if path == "/" { "/".to_string() } else { format!("{path}/") };
            state
                .files
                .iter()
                .filter(|(name, node)| name.starts_with(&prefix) && matches!(node.kind, NodeKind::File(_)))
                .map(|(name, _)| name.clone())
                .collect()
        }
        _ => vec![operand.to_string()],
    }
}

/// `grep`'s command line.
#[derive(Debug, Default)]
struct GrepArgs {
    count: bool,
    extended: bool,
    fixed: bool,
    ignore_case: bool,
    invert: bool,
    quiet: bool,
    line_numbers: bool,
    /// `-o`: print only the matched part of each line.
    only_matching: bool,
    /// `-r`: search the files under directory operands.
    recursive: bool,
    /// `-l`: print only the names of files with a match.
    files_with_matches: bool,
    /// `-H`: name the file on every line, even of a single file.
    with_filename: bool,
    /// `-f FILE`: patterns, one a line, from FILE (`-`: standard input).
    pattern_files: Vec<String>,
    patterns: Vec<String>,
    files: Vec<String>,
}

impl GrepArgs {
    fn parse(args: &[String]) -> Result<GrepArgs, String> {
        let mut parsed = GrepArgs::default();
        let mut operands = Vec::new();
        let mut args = args.iter();
        let mut options_done = false;
        while let Some(arg) = args.next() {
            if options_done || arg == "-" || !arg.starts_with('-') {
                operands.push(arg.clone());
                continue;
            }
            if arg == "--" {
                options_done = true;
                continue;
            }
            let mut flags = arg[1..].chars();
            while let Some(flag) = flags.next() {
                match flag {
                    'c' => parsed.count = true,
                    'E' => parsed.extended = true,
                    'F' => parsed.fixed = true,
                    'i' => parsed.ignore_case = true,
                    'v' => parsed.invert = true,
                    'q' => parsed.quiet = true,
                    'n' => parsed.line_numbers = true,
                    'o' => parsed.only_matching = true,
                    'r' | 'R' => parsed.recursive = true,
                    'l' => parsed.files_with_matches = true,
                    'H' => parsed.with_filename = true,
                    'f' => {
                        let rest: String = flags.by_ref().collect();
                        let file = if rest.is_empty() { args.next().cloned().ok_or("option requires an argument -- 'f'")? } else { rest };
                        parsed.pattern_files.push(file);
                    }
                    's' | 'h' => {}
                    'e' => {
                        let rest: String = flags.by_ref().collect();
                        let pattern =
                            if rest.is_empty() { args.next().cloned().ok_or("option requires an argument -- 'e'")? } else { rest };
                        parsed.patterns.push(pattern);
                    }
                    f => return Err(format!("invalid option -- '{f}'")),
                }
            }
        }
        let mut operands = operands.into_iter();
        if parsed.patterns.is_empty() && parsed.pattern_files.is_empty() {
            parsed.patterns.push(operands.next().ok_or("no pattern given")?);
        }
        parsed.files = operands.collect();
        Ok(parsed)
    }

    /// One regex for all patterns, in Rust syntax.
    fn regex(&self) -> Result<regex::Regex, String> {
        let alternatives: Vec<String> = self
            .patterns
            .iter()
            .flat_map(|p| p.split('\n'))
            .map(|p| {
                if self.fixed {
                    regex::escape(p)
                } else if self.extended {
                    p.to_string()
                } else {
                    basic_to_extended(p)
                }
            })
            .map(|p| format!("(?:{p})"))
            .collect();
        regex::RegexBuilder::new(&alternatives.join("|"))
            .case_insensitive(self.ignore_case)
            .build()
            .map_err(|e| e.to_string().lines().last().unwrap_or("bad pattern").trim().to_string())
    }
}

/// A POSIX basic regular expression rewritten as an extended one: `\(`, `\)`,
/// `\{`, `\}`, `\|`, `\+` and `\?` are the operators, their bare forms literal.
fn basic_to_extended(pattern: &str) -> String {
    let mut out = String::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(op @ ('(' | ')' | '{' | '}' | '|' | '+' | '?')) => out.push(op),
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push_str("\\\\"),
            },
            '(' | ')' | '{' | '}' | '|' | '+' | '?' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

fn grep(state: &DeviceState, account: &Account, args: &[String], input: &str) -> Output {
    let usage = |message: String| {
        Output::fail(format!("grep: {message}\nUsage: grep [-cEFHilnoqrv] [-e PATTERN] [-f FILE] PATTERN [FILE]...\n"), 2)
    };
    let mut parsed = match GrepArgs::parse(args) {
        Ok(parsed) => parsed,
        Err(message) => return usage(message),
    };
    // Patterns from files (`-f -`: standard input, which then holds no data).
    let mut input = input;
    for file in std::mem::take(&mut parsed.pattern_files) {
        let text = if file == "-" {
            std::mem::take(&mut input).to_string()
        } else {
            match read_file(state, account, &file) {
                Ok(text) => text,
                Err(error) => return Output::fail(format!("grep: {file}: {error}\n"), 2),
            }
        };
        parsed.patterns.extend(text.lines().map(String::from));
    }
    if parsed.patterns.is_empty() {
        // No pattern at all (an empty -f file) matches nothing.
        parsed.patterns.push("$.^".to_string());
        parsed.extended = true;
        parsed.fixed = false;
    }
    if parsed.recursive {
        parsed.files = parsed.files.iter().flat_map(|operand| files_under(state, account, operand)).collect();
    }
    let regex = match parsed.regex() {
        Ok(regex) => regex,
        Err(message) => return Output::fail(format!("grep: bad regex: {message}\n"), 2),
    };
    let (texts, errors) = inputs(state, account, "grep", &parsed.files, input);
    let named = parsed.files.len() > 1 || parsed.recursive || parsed.with_filename;
    let mut stdout = String::new();
    let mut selected = 0;
    for (name, text) in &texts {
        let mut count = 0;
        for (number, line) in text.lines().enumerate() {
            if regex.is_match(line) == parsed.invert {
                continue;
            }
            count += 1;
            if parsed.files_with_matches {
                stdout.push_str(&format!("{name}\n"));
                break;
            }
            if parsed.count || parsed.quiet {
                continue;
            }
            if named {
                stdout.push_str(&format!("{name}:"));
            }
            if parsed.line_numbers {
                stdout.push_str(&format!("{}:", number + 1));
            }
            if parsed.only_matching && !parsed.invert {
                // Every non-empty match on its own line, as GNU and BusyBox grep print them.
                let parts: Vec<&str> = regex.find_iter(line).map(|m| m.as_str()).filter(|m| !m.is_empty()).collect();
                stdout.push_str(&parts.join("\n"));
            } else {
                stdout.push_str(line);
            }
            stdout.push('\n');
        }
        if parsed.count && !parsed.quiet {
            if named {
                stdout.push_str(&format!("{name}:"));
            }
            stdout.push_str(&format!("{count}\n"));
        }
        selected += count;
    }
    let status = if parsed.quiet && selected > 0 {
        0
    } else if !errors.is_empty() {
        2
    } else if selected > 0 {
        0
    } else {
        1
    };
    Output { stdout, stderr: errors, status }
}

/// `head`/`tail`'s command line: `-n N`, `-nN` or `-N`.
struct LineArgs {
    lines: usize,
    files: Vec<String>,
}

impl LineArgs {
    fn parse(args: &[String]) -> Result<LineArgs, String> {
        let mut lines = 10;
        let mut files = Vec::new();
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let count = if arg == "-n" {
                Some(args.next().ok_or("option requires an argument -- 'n'")?.clone())
            } else if let Some(n) = arg.strip_prefix("-n") {
                Some(n.to_string())
            } else if arg.len() > 1 && arg.starts_with('-') {
                Some(arg[1..].to_string())
            } else {
                files.push(arg.clone());
                None
            };
            if let Some(count) = count {
                lines = count.parse().map_err(|_| format!("invalid number of lines: '{count}'"))?;
            }
        }
        Ok(LineArgs { lines, files })
    }
}

fn head_tail(state: &DeviceState, account: &Account, program: &str, args: &[String], input: &str) -> Output {
    let parsed = match LineArgs::parse(args) {
        Ok(parsed) => parsed,
        Err(message) => return Output::fail(format!("{program}: {message}\n"), 1),
    };
    let (texts, errors) = inputs(state, account, program, &parsed.files, input);
    let named = parsed.files.len() > 1;
    let mut stdout = String::new();
    for (index, (name, text)) in texts.iter().enumerate() {
        if named {
            if index > 0 {
                stdout.push('\n');
            }
            stdout.push_str(&format!("==> {name} <==\n"));
        }
        let all: Vec<&str> = text.lines().collect();
        let shown = if program == "head" { &all[..parsed.lines.min(all.len())] } else { &all[all.len().saturating_sub(parsed.lines)..] };
        for line in shown {
            stdout.push_str(line);
            stdout.push('\n');
        }
    }
    let status = if errors.is_empty() { 0 } else { 1 };
    Output { stdout, stderr: errors, status }
}

/// `wc`'s command line.
struct WcArgs {
    lines: bool,
    words: bool,
    bytes: bool,
    files: Vec<String>,
}

impl WcArgs {
    fn parse(args: &[String]) -> Result<WcArgs, String> {
        let mut parsed = WcArgs { lines: false, words: false, bytes: false, files: Vec::new() };
        for arg in args {
            match arg.strip_prefix('-').filter(|f| !f.is_empty()) {
                Some(flags) => {
                    for flag in flags.chars() {
                        match flag {
                            'l' => parsed.lines = true,
                            'w' => parsed.words = true,
                            'c' => parsed.bytes = true,
                            f => return Err(format!("invalid option -- '{f}'")),
                        }
                    }
                }
                None => parsed.files.push(arg.clone()),
            }
        }
        if !(parsed.lines || parsed.words || parsed.bytes) {
            (parsed.lines, parsed.words, parsed.bytes) = (true, true, true);
        }
        Ok(parsed)
    }
}

fn wc(state: &DeviceState, account: &Account, args: &[String], input: &str) -> Output {
    let parsed = match WcArgs::parse(args) {
        Ok(parsed) => parsed,
        Err(message) => return Output::fail(format!("wc: {message}\n"), 1),
    };
    let (texts, errors) = inputs(state, account, "wc", &parsed.files, input);
    let mut stdout = String::new();
    for (name, text) in &texts {
        let mut fields = Vec::new();
        if parsed.lines {
            fields.push(text.matches('\n').count());
        }
        if parsed.words {
            fields.push(text.split_whitespace().count());
        }
        if parsed.bytes {
            fields.push(text.len());
        }
        let mut line =
            if fields.len() == 1 { fields[0].to_string() } else { fields.iter().map(|n| format!("{n:>7}")).collect::<Vec<_>>().join(" ") };
        if !parsed.files.is_empty() {
            line.push(' ');
            line.push_str(name);
        }
        stdout.push_str(&line);
        stdout.push('\n');
    }
    let status = if errors.is_empty() { 0 } else { 1 };
    Output { stdout, stderr: errors, status }
}

fn passwd(state: &mut DeviceState, account: &Account, args: &[String], input: &str) -> Output {
    let target = match args {
        [flag, user] if flag == "--stdin" => user.clone(),
        [flag] if flag == "--stdin" => account.name.clone(),
        _ => {
            return Output::fail(
                "passwd: only the non-interactive form is supported: passwd --stdin USER \
                 (new password on standard input)\n"
                    .into(),
                2,
            )
        }
    };
    if account.uid != ROOT_UID && target != account.name {
        return Output::fail(format!("passwd: You may not view or modify password information for {target}.\n"), 1);
    }
    if !state.accounts.contains_key(&target) {
        return Output::fail(format!("passwd: user '{target}' does not exist\n"), 1);
    }
    let new_password = input.lines().next().unwrap_or("").to_string();
    if new_password.is_empty() {
        return Output::fail("passwd: no password supplied on standard input\n".into(), 1);
    }
    if let Some(policy) = state.policy.password_policy {
        if let Some(reason) = policy.violation(&new_password) {
            return Output::fail(
                format!(
                    "passwd: BAD PASSWORD: {reason}\n\
                     passwd: Authentication token manipulation error\n"
                ),
                1,
            );
        }
    }
    if let Some(target_account) = state.accounts.get_mut(&target) {
        target_account.password = new_password;
    }
    state.touch("/etc/shadow");
    Output::ok(format!("Changing password for user {target}.\npasswd: all authentication tokens updated successfully.\n"))
}

/// `find PATH... [-xdev] [-perm -MODE|/MODE|MODE] [-user NAME] [-type f|d]`: the paths
/// under each PATH that match every predicate, as GNU and BusyBox find print them;
/// a directory the caller may not read is reported and not entered.
fn find(state: &DeviceState, account: &Account, args: &[String]) -> Output {
    let starts: Vec<&String> = args.iter().take_while(|a| !a.starts_with('-')).collect();
    let mut perm: Option<(char, u16)> = None;
    let mut owner: Option<&str> = None;
    let mut kind: Option<&str> = None;
    let mut rest = args[starts.len()..].iter();
    while let Some(predicate) = rest.next() {
        let mut value = || rest.next().map(String::as_str).ok_or_else(|| format!("find: missing argument to `{predicate}'\n"));
        let parsed = match predicate.as_str() {
            "-xdev" | "-mount" => Ok(()),
            "-perm" => value().and_then(|v| {
                let (how, digits) = match v.chars().next() {
                    Some(c @ ('-' | '/')) => (c, &v[1..]),
                    _ => ('=', v),
                };
                u16::from_str_radix(digits, 8).map(|mode| perm = Some((how, mode))).map_err(|_| format!("find: invalid mode `{v}'\n"))
            }),
            "-user" => value().map(|v| owner = Some(v)),
            "-type" => value().and_then(|v| match v {
                "f" | "d" => {
                    kind = Some(v);
                    Ok(())
                }
                other => Err(format!("find: Unknown argument to -type: {other}\n")),
            }),
            other => Err(format!("find: unknown predicate `{other}'\n")),
        };
        if let Err(message) = parsed {
            return Output::fail(message, 1);
        }
    }
    let matches = |node: &Node| {
        let mode = node.mode & 0o7777;
        perm.is_none_or(|(how, bits)| match how {
            '-' => mode & bits == bits,
            '/' => mode & bits != 0,
            _ => mode == bits,
        }) && owner.is_none_or(|o| node.owner == o)
            && kind.is_none_or(|k| (k == "d") == matches!(node.kind, NodeKind::Directory))
    };
    let mut out = Output::ok(String::new());
    let default = ".".to_string();
    for start in if starts.is_empty() { vec![&default] } else { starts } {
        let path = normalize(account, start);
        if let Err(error) = lookup(state, account, &path) {
            out.stderr.push_str(&format!("find: '{start}': {error}\n"));
            out.status = 1;
            continue;
        }
        let prefix = if path == "/" { "/".to_string() } else { format!("{path}/") };
        let mut closed: Vec<String> = Vec::new();
        for (name, node) in state.files.range(path.clone()..) {
            if name != &path && !name.starts_with(&prefix) {
                continue;
            }
            if closed.iter().any(|c| name.starts_with(c.as_str())) {
                continue;
            }
            if matches(node) {
                out.stdout.push_str(&format!("{name}\n"));
            }
            if matches!(node.kind, NodeKind::Directory)
                && !(permitted(state, account, node, READ) && permitted(state, account, node, EXECUTE))
            {
                out.stderr.push_str(&format!("find: '{name}': Permission denied\n"));
                out.status = 1;
                closed.push(format!("{name}/"));
            }
        }
    }
    out
}

/// `sudo -n COMMAND...`: never asks (no terminal here). Where the profile gives the
/// operators a `NOPASSWD` rule (weak), runs COMMAND as root; else says a password is
/// required, as sudo does for `-n` whenever it would have to ask.
fn sudo(state: &mut DeviceState, account: &Account, shell_pid: u32, args: &[String], input: &str) -> Output {
    let (non_interactive, command) = match args.first().map(String::as_str) {
        Some("-n") => (true, &args[1..]),
        _ => (false, args),
    };
    if command.is_empty() {
        return Output::fail("usage: sudo -n COMMAND [ARG...]\n".into(), 1);
    }
    let operator = account.uid != ROOT_UID && !account.system;
    if account.uid == ROOT_UID || (operator && !state.profile.sudo_asks_password()) {
        let Some(root) = state.accounts.get("root").cloned() else {
            return Output::fail("sudo: unknown user root\n".into(), 1);
        };
        return builtin(state, &root, shell_pid, command, input);
    }
    if non_interactive {
        Output::fail("sudo: a password is required\n".into(), 1)
    } else {
        Output::fail("sudo: a terminal is required to read the password; either use the -S option to read from standard input or configure an askpass helper\n".into(), 1)
    }
}

/// `kill -0 PID...`: whether the caller may signal each process, as the kernel decides
/// it (root, or the process's own user); no signal is ever delivered, so only `-0`.
fn kill(state: &DeviceState, account: &Account, shell_pid: u32, args: &[String]) -> Output {
    let Some(("-0", pids)) = args.split_first().map(|(first, rest)| (first.as_str(), rest)) else {
        return Output::fail("sh: kill: only `kill -0 PID` (may I signal it?) is simulated\n".into(), 2);
    };
    let mut out = Output::ok(String::new());
    for pid in pids {
        let owner = pid.parse::<u32>().ok().and_then(|pid| {
            state
                .processes
                .iter()
                .chain(&state.sessions)
                .find(|p| p.pid == pid)
                .map(|p| p.user.clone())
                .or_else(|| (pid == shell_pid).then(|| account.name.clone()))
        });
        match owner {
            None => {
                out.stderr.push_str(&format!("sh: kill: can't kill pid {pid}: No such process\n"));
                out.status = 1;
            }
            Some(user) if account.uid != ROOT_UID && user != account.name => {
                out.stderr.push_str(&format!("sh: kill: can't kill pid {pid}: Operation not permitted\n"));
                out.status = 1;
            }
            Some(_) => {}
        }
    }
    out
}
