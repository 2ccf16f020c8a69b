//! Telnet (RFC 854/855) with RFC 2217 COM-port control, as ser2net's
//! `telnet(rfc2217)` accepter and terminal servers speak it.
//!
//! Small enough to write by hand and to test byte by byte: an IAC state machine that
//! survives any chunking, option negotiation after RFC 1143's "Q method" (answer only
//! when an option's state changes, so two polite peers never loop), IAC doubling on
//! write, and COM-PORT-OPTION (44) subnegotiation to set baud, data size, parity and
//! stop size once the server agrees. The pump records only the data this codec
//! extracts; negotiation shows up as `Note` events.

use std::fmt::Write as _;

use super::pump::{Decoded, WireCodec};
use proofrig_model::rig::Parity;

const IAC: u8 = 255;
const DONT: u8 = 254;
const DO: u8 = 253;
const WONT: u8 = 252;
const WILL: u8 = 251;
const SB: u8 = 250;
const SE: u8 = 240;
const CR: u8 = b'\r';
const LF: u8 = b'\n';
const NUL: u8 = 0;

const OPT_BINARY: u8 = 0;
const OPT_ECHO: u8 = 1;
const OPT_SGA: u8 = 3;
/// RFC 2217 COM-PORT-OPTION.
pub(crate) const OPT_COM_PORT: u8 = 44;

// RFC 2217 client-to-server commands; the server answers with the same code + 100.
const CPO_SIGNATURE: u8 = 0;
const CPO_SET_BAUDRATE: u8 = 1;
const CPO_SET_DATASIZE: u8 = 2;
const CPO_SET_PARITY: u8 = 3;
const CPO_SET_STOPSIZE: u8 = 4;
const CPO_SERVER_OFFSET: u8 = 100;

/// Longest subnegotiation we keep; anything longer is noise and is truncated.
const MAX_SUBNEGOTIATION: usize = 512;

/// Line settings to request over RFC 2217.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ComPortSettings {
    pub baud: u32,
    pub data_bits: u8,
    pub parity: Parity,
    pub stop_bits: u8,
}

impl ComPortSettings {
    fn parity_code(&self) -> u8 {
        match self.parity {
            Parity::None => 1,
            Parity::Odd => 2,
            Parity::Even => 3,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Data,
    /// After a CR in non-binary mode: a following NUL is padding, not data.
    DataAfterCr,
    Iac,
    Verb(u8),
    SbOption,
    SbData,
    SbIac,
}

/// Q-method state of one option, one side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Side {
    enabled: bool,
    /// We asked (WILL/DO) and wait for the answer.
    asked: bool,
}

/// The telnet side of a console connection.
pub(crate) struct Telnet {
    state: State,
    /// Options we perform (answers to DO/DONT), per option code.
    local: [Side; 256],
    /// Options the server performs (answers to WILL/WONT).
    remote: [Side; 256],
    subnegotiation: Vec<u8>,
    rfc2217: bool,
    com_port: Option<ComPortSettings>,
    /// COM-PORT answers still awaited, by client command code.
    awaiting: Vec<u8>,
    answered: Vec<String>,
    settled: bool,
    log: Vec<String>,
}

impl Telnet {
    /// `com_port`: settings to request over RFC 2217; `None` for plain telnet, or for
    /// RFC 2217 without line settings (then COM-PORT-OPTION is accepted but unused).
    pub(crate) fn new(rfc2217: bool, com_port: Option<ComPortSettings>) -> Self {
        Telnet {
            state: State::Data,
            local: [Side::default(); 256],
            remote: [Side::default(); 256],
            subnegotiation: Vec::new(),
            rfc2217,
            com_port: if rfc2217 { com_port } else { None },
            awaiting: Vec::new(),
            answered: Vec::new(),
            settled: false,
            log: Vec::new(),
        }
    }

    fn accepts_local(&self, option: u8) -> bool {
        matches!(option, OPT_BINARY | OPT_SGA) || (option == OPT_COM_PORT && self.rfc2217)
    }

    fn accepts_remote(option: u8) -> bool {
        matches!(option, OPT_BINARY | OPT_SGA | OPT_ECHO)
    }

    fn binary_in(&self) -> bool {
        self.remote[OPT_BINARY as usize].enabled
    }

    fn binary_out(&self) -> bool {
        self.local[OPT_BINARY as usize].enabled
    }

    fn send(out: &mut Vec<u8>, verb: u8, option: u8) {
        out.extend_from_slice(&[IAC, verb, option]);
    }

    fn negotiate(&mut self, verb: u8, option: u8, out: &mut Decoded) {
        let idx = option as usize;
        self.log.push(format!("got {} {}", verb_name(verb), option_name(option)));
        match verb {
            WILL => {
                let side = &mut self.remote[idx];
                if side.asked {
                    *side = Side { enabled: true, asked: false };
                } else if !side.enabled {
                    if Self::accepts_remote(option) {
                        *side = Side { enabled: true, asked: false };
                        Self::send(&mut out.replies, DO, option);
                        self.log.push(format!("sent DO {}", option_name(option)));
                    } else {
                        Self::send(&mut out.replies, DONT, option);
                        self.log.push(format!("sent DONT {}", option_name(option)));
                    }
                }
            }
            WONT => {
                let side = &mut self.remote[idx];
                if side.asked {
                    *side = Side::default();
                } else if side.enabled {
                    *side = Side::default();
                    Self::send(&mut out.replies, DONT, option);
                    self.log.push(format!("sent DONT {}", option_name(option)));
                }
            }
            DO => {
                let was_enabled = self.local[idx].enabled;
                if self.local[idx].asked {
                    self.local[idx] = Side { enabled: true, asked: false };
                } else if !was_enabled {
                    if self.accepts_local(option) {
                        self.local[idx] = Side { enabled: true, asked: false };
                        Self::send(&mut out.replies, WILL, option);
                        self.log.push(format!("sent WILL {}", option_name(option)));
                    } else {
                        Self::send(&mut out.replies, WONT, option);
                        self.log.push(format!("sent WONT {}", option_name(option)));
                    }
                }
                if option == OPT_COM_PORT && !was_enabled && self.local[idx].enabled {
                    self.start_com_port(out);
                }
            }
            DONT => {
                let side = &mut self.local[idx];
                let asked = side.asked;
                if side.asked {
                    *side = Side::default();
                } else if side.enabled {
                    *side = Side::default();
                    Self::send(&mut out.replies, WONT, option);
                    self.log.push(format!("sent WONT {}", option_name(option)));
                }
                if option == OPT_COM_PORT && asked {
                    self.settle(out, "the server refused RFC 2217 COM-PORT-OPTION; line settings are the server's".into());
                }
            }
            _ => {}
        }
    }

    fn start_com_port(&mut self, out: &mut Decoded) {
        let Some(settings) = self.com_port else {
            self.settle(out, "RFC 2217 COM-PORT-OPTION agreed; no line settings requested".into());
            return;
        };
        let mut sub = |command: u8, value: &[u8]| {
            out.replies.extend_from_slice(&[IAC, SB, OPT_COM_PORT, command]);
            push_escaped(&mut out.replies, value);
            out.replies.extend_from_slice(&[IAC, SE]);
        };
        sub(CPO_SET_BAUDRATE, &settings.baud.to_be_bytes());
        sub(CPO_SET_DATASIZE, &[settings.data_bits]);
        sub(CPO_SET_PARITY, &[settings.parity_code()]);
        sub(CPO_SET_STOPSIZE, &[settings.stop_bits]);
        self.awaiting = vec![CPO_SET_BAUDRATE, CPO_SET_DATASIZE, CPO_SET_PARITY, CPO_SET_STOPSIZE];
        self.log.push(format!(
            "requested {} baud, {} data bits, parity {:?}, {} stop bits",
            settings.baud, settings.data_bits, settings.parity, settings.stop_bits
        ));
    }

    fn settle(&mut self, out: &mut Decoded, summary: String) {
        if !self.settled {
            self.settled = true;
            out.notes.push(format!("rfc2217: {summary}"));
            out.settled = Some(summary);
        }
    }

    fn subnegotiation_done(&mut self, out: &mut Decoded) {
        let sub = std::mem::take(&mut self.subnegotiation);
        let Some((&option, rest)) = sub.split_first() else { return };
        if option != OPT_COM_PORT {
            self.log.push(format!("ignored subnegotiation of {}", option_name(option)));
            return;
        }
        let Some((&command, value)) = rest.split_first() else { return };
        let Some(asked) = command.checked_sub(CPO_SERVER_OFFSET) else {
            self.log.push(format!("ignored client-side COM-PORT command {command} from the server"));
            return;
        };
        let Some(settings) = self.com_port else { return };
        let answer = match asked {
            CPO_SIGNATURE => {
                self.log.push(format!("server signature: {}", String::from_utf8_lossy(value)));
                return;
            }
            CPO_SET_BAUDRATE if value.len() == 4 => {
                let baud = u32::from_be_bytes([value[0], value[1], value[2], value[3]]);
                (baud == settings.baud, format!("baud {baud}"))
            }
            CPO_SET_DATASIZE if value.len() == 1 => (value[0] == settings.data_bits, format!("{} data bits", value[0])),
            CPO_SET_PARITY if value.len() == 1 => {
                let name = match value[0] {
                    1 => "none",
                    2 => "odd",
                    3 => "even",
                    4 => "mark",
                    5 => "space",
                    _ => "unknown",
                };
                (value[0] == settings.parity_code(), format!("parity {name}"))
            }
            CPO_SET_STOPSIZE if value.len() == 1 => {
                let name = match value[0] {
                    1 => "1",
                    2 => "2",
                    3 => "1.5",
                    _ => "unknown",
                };
                (value[0] == settings.stop_bits, format!("{name} stop bits"))
            }
            // Line/modem state notifications and flow-control suspend/resume: nothing to do.
            _ => return,
        };
        let Some(pos) = self.awaiting.iter().position(|&c| c == asked) else { return };
        self.awaiting.remove(pos);
        let (as_asked, text) = answer;
        self.answered.push(if as_asked { text } else { format!("{text} (NOT what was asked)") });
        if self.awaiting.is_empty() {
            let summary = format!("server confirmed {}", self.answered.join(", "));
            self.settle(out, summary);
        }
    }

    fn flush_log(&mut self, out: &mut Decoded) {
        if !self.log.is_empty() {
            let mut text = String::from("telnet: ");
            for (i, entry) in self.log.drain(..).enumerate() {
                if i > 0 {
                    text.push_str("; ");
                }
                let _ = write!(text, "{entry}");
            }
            out.notes.push(text);
        }
    }
}

impl WireCodec for Telnet {
    fn is_transparent(&self) -> bool {
        false
    }

    fn greeting(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        // Binary both ways keeps data transparent (no CR NUL padding); SGA both ways is
        // character-at-a-time mode. COM-PORT-OPTION only when RFC 2217 was asked for.
        for (verb, option) in [(WILL, OPT_BINARY), (DO, OPT_BINARY), (WILL, OPT_SGA), (DO, OPT_SGA)] {
            Self::send(&mut out, verb, option);
            match verb {
                WILL => self.local[option as usize].asked = true,
                _ => self.remote[option as usize].asked = true,
            }
        }
        if self.rfc2217 {
            Self::send(&mut out, WILL, OPT_COM_PORT);
            self.local[OPT_COM_PORT as usize].asked = true;
        }
        out
    }

    fn decode(&mut self, wire: &[u8], out: &mut Decoded) {
        for &byte in wire {
            self.state = match self.state {
                State::Data | State::DataAfterCr => {
                    let after_cr = self.state == State::DataAfterCr;
                    match byte {
                        IAC => State::Iac,
                        NUL if after_cr => State::Data,
                        CR if !self.binary_in() => {
                            out.data.push(CR);
                            State::DataAfterCr
                        }
                        _ => {
                            out.data.push(byte);
                            State::Data
                        }
                    }
                }
                State::Iac => match byte {
                    IAC => {
                        out.data.push(IAC);
                        State::Data
                    }
                    WILL | WONT | DO | DONT => State::Verb(byte),
                    SB => State::SbOption,
                    // NOP, GA, DM, BRK, AYT...: no data and nothing we need to act on.
                    _ => State::Data,
                },
                State::Verb(verb) => {
                    self.negotiate(verb, byte, out);
                    State::Data
                }
                State::SbOption => {
                    self.subnegotiation.clear();
                    self.subnegotiation.push(byte);
                    State::SbData
                }
                State::SbData => {
                    if byte == IAC {
                        State::SbIac
                    } else {
                        if self.subnegotiation.len() < MAX_SUBNEGOTIATION {
                            self.subnegotiation.push(byte);
                        }
                        State::SbData
                    }
                }
                State::SbIac => match byte {
                    SE => {
                        self.subnegotiation_done(out);
                        State::Data
                    }
                    IAC => {
                        if self.subnegotiation.len() < MAX_SUBNEGOTIATION {
                            self.subnegotiation.push(IAC);
                        }
                        State::SbData
                    }
                    // RFC 855: IAC followed by anything else inside SB ends it too.
                    _ => {
                        self.subnegotiation_done(out);
                        State::Data
                    }
                },
            };
        }
        self.flush_log(out);
        // A server that does telnet but never answers about COM-PORT leaves `settled`
        // unset; open_console waits for it only up to the connect timeout.
    }

    fn encode(&mut self, data: &[u8], wire: &mut Vec<u8>) {
        let binary = self.binary_out();
        for (i, &byte) in data.iter().enumerate() {
            match byte {
                IAC => wire.extend_from_slice(&[IAC, IAC]),
                // NVT: a bare CR must be followed by NUL (RFC 854) unless binary.
                CR if !binary && data.get(i + 1) != Some(&LF) => wire.extend_from_slice(&[CR, NUL]),
                _ => wire.push(byte),
            }
        }
    }
}

fn push_escaped(out: &mut Vec<u8>, value: &[u8]) {
    for &byte in value {
        if byte == IAC {
            out.push(IAC);
        }
        out.push(byte);
    }
}

fn verb_name(verb: u8) -> &'static str {
    match verb {
        WILL => "WILL",
        WONT => "WONT",
        DO => "DO",
        DONT => "DONT",
        _ => "?",
    }
}

fn option_name(option: u8) -> String {
    match option {
        OPT_BINARY => "BINARY".into(),
        OPT_ECHO => "ECHO".into(),
        OPT_SGA => "SUPPRESS-GO-AHEAD".into(),
        OPT_COM_PORT => "COM-PORT-OPTION".into(),
        other => format!("option {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ComPortSettings {
        ComPortSettings { baud: 9600, data_bits: 7, parity: Parity::Even, stop_bits: 2 }
    }

    /// Feed `wire` in chunks of `chunk` bytes, collecting everything.
    fn decode_in_chunks(telnet: &mut Telnet, wire: &[u8], chunk: usize) -> Decoded {
        let mut all = Decoded::default();
        for piece in wire.chunks(chunk) {
            let mut out = Decoded::default();
            telnet.decode(piece, &mut out);
            all.data.extend(out.data);
            all.replies.extend(out.replies);
            all.notes.extend(out.notes);
            if out.settled.is_some() {
                assert!(all.settled.is_none(), "settled twice");
                all.settled = out.settled;
            }
        }
        all
    }

    #[test]
    fn iac_iac_is_one_data_byte_at_any_chunking() {
        let wire = b"a\xff\xffb\xff\xff\xff\xffc";
        for chunk in 1..=wire.len() {
            let mut telnet = Telnet::new(false, None);
            let out = decode_in_chunks(&mut telnet, wire, chunk);
            assert_eq!(out.data, b"a\xffb\xff\xffc", "chunk size {chunk}");
            assert!(out.replies.is_empty());
        }
    }

    #[test]
    fn negotiation_is_stripped_and_answered_once() {
        // ser2net's greeting: WILL SGA, DO SGA, WILL ECHO, DONT ECHO, DO BINARY, WILL BINARY, DO COM-PORT.
        let greeting = b"\xff\xfb\x03\xff\xfd\x03\xff\xfb\x01\xff\xfe\x01\xff\xfd\x00\xff\xfb\x00\xff\xfd\x2chello";
        for chunk in [1, 2, 5, greeting.len()] {
            let mut telnet = Telnet::new(true, Some(settings()));
            let ours = telnet.greeting();
            assert_eq!(ours, b"\xff\xfb\x00\xff\xfd\x00\xff\xfb\x03\xff\xfd\x03\xff\xfb\x2c");
            let out = decode_in_chunks(&mut telnet, greeting, chunk);
            assert_eq!(out.data, b"hello");
            // Everything the server offered was already asked for by us (acks, no reply),
            // except WILL ECHO (accept with DO ECHO). DONT ECHO: not enabled, silent.
            let mut expected = b"\xff\xfd\x01".to_vec();
            // DO COM-PORT acknowledged our WILL: the four settings follow.
            expected.extend_from_slice(b"\xff\xfa\x2c\x01\x00\x00\x25\x80\xff\xf0");
            expected.extend_from_slice(b"\xff\xfa\x2c\x02\x07\xff\xf0");
            expected.extend_from_slice(b"\xff\xfa\x2c\x03\x03\xff\xf0");
            expected.extend_from_slice(b"\xff\xfa\x2c\x04\x02\xff\xf0");
            assert_eq!(out.replies, expected, "chunk size {chunk}");
            assert!(telnet.binary_in() && telnet.binary_out());
            assert!(out.notes.iter().any(|n| n.contains("got DO COM-PORT-OPTION")));
        }
    }

    #[test]
    fn unknown_options_are_refused_and_repeats_are_not_answered() {
        let mut telnet = Telnet::new(false, None);
        let mut out = Decoded::default();
        // DO TTYPE(24), WILL NAWS(31)... from a server we do not support; DO COM-PORT without rfc2217.
        telnet.decode(b"\xff\xfd\x18\xff\xfb\x1f\xff\xfd\x2c", &mut out);
        assert_eq!(out.replies, b"\xff\xfc\x18\xff\xfe\x1f\xff\xfc\x2c");
        let mut again = Decoded::default();
        telnet.decode(b"\xff\xfb\x01\xff\xfb\x01\xff\xfc\x01\xff\xfc\x01", &mut again);
        // WILL ECHO accepted once; the repeat is ignored; WONT ECHO acknowledged once.
        assert_eq!(again.replies, b"\xff\xfd\x01\xff\xfe\x01");
    }

    #[test]
    fn com_port_answers_settle_the_negotiation_across_split_subnegotiations() {
        let mut wire = b"\xff\xfd\x2c".to_vec();
        wire.extend_from_slice(b"\xff\xfa\x2c\x6b\x00\xff\xf0"); // NOTIFY-MODEMSTATE: ignored
        wire.extend_from_slice(b"\xff\xfa\x2c\x65\x00\x00\x25\x80\xff\xf0");
        wire.extend_from_slice(b"data\xff\xfa\x2c\x66\x07\xff\xf0");
        wire.extend_from_slice(b"\xff\xfa\x2c\x67\x03\xff\xf0");
        wire.extend_from_slice(b"\xff\xfa\x2c\x68\x02\xff\xf0more");
        for chunk in [1, 3, 7, wire.len()] {
            let mut telnet = Telnet::new(true, Some(settings()));
            telnet.greeting();
            let out = decode_in_chunks(&mut telnet, &wire, chunk);
            assert_eq!(out.data, b"datamore");
            let summary = out.settled.expect("all four answers arrived");
            assert_eq!(summary, "server confirmed baud 9600, 7 data bits, parity even, 2 stop bits");
        }
    }

    #[test]
    fn subnegotiation_values_escape_iac_both_ways() {
        // A baud of 0x0000_FFFF has an IAC byte in its value: it must be doubled on the wire.
        let odd = ComPortSettings { baud: 0xFFFF, data_bits: 8, parity: Parity::None, stop_bits: 1 };
        let mut telnet = Telnet::new(true, Some(odd));
        telnet.greeting();
        let mut out = Decoded::default();
        telnet.decode(b"\xff\xfd\x2c", &mut out);
        assert!(out.replies.starts_with(b"\xff\xfa\x2c\x01\x00\x00\xff\xff\xff\xff\xff\xf0"));
        let mut answer = Decoded::default();
        telnet.decode(b"\xff\xfa\x2c\x65\x00\x00\xff\xff\xff\xff\xff\xf0", &mut answer);
        assert!(answer.data.is_empty());
        assert!(telnet.answered[0] == "baud 65535", "{:?}", telnet.answered);
    }

    #[test]
    fn refused_com_port_settles_with_a_clear_summary() {
        let mut telnet = Telnet::new(true, Some(settings()));
        telnet.greeting();
        let mut out = Decoded::default();
        telnet.decode(b"\xff\xfe\x2c", &mut out);
        assert!(out.settled.unwrap().contains("refused"));
        assert!(out.replies.is_empty(), "a DONT answering our WILL needs no reply");
    }

    #[test]
    fn writes_double_iac_and_pad_bare_cr_outside_binary() {
        let mut telnet = Telnet::new(false, None);
        let mut wire = Vec::new();
        telnet.encode(b"a\xffb\r\nc\r", &mut wire);
        assert_eq!(wire, b"a\xff\xffb\r\nc\r\x00");
        // In binary mode CR goes as is; IAC is still doubled.
        let mut out = Decoded::default();
        telnet.greeting();
        telnet.decode(b"\xff\xfd\x00\xff\xfb\x00", &mut out);
        let mut wire = Vec::new();
        telnet.encode(b"c\r\xff", &mut wire);
        assert_eq!(wire, b"c\r\xff\xff");
    }

    #[test]
    fn cr_nul_padding_is_removed_from_non_binary_input() {
        let mut telnet = Telnet::new(false, None);
        let out = decode_in_chunks(&mut telnet, b"a\r\0b\r\nc\0", 1);
        assert_eq!(out.data, b"a\rb\r\nc\0");
    }
}
