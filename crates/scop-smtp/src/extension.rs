//! Service extensions (RFC 5321 2.2, 4.1.1.1): the built-ins, their typed
//! MAIL/RCPT parameters, and a registry for caller-defined extensions.

use std::fmt;

use crate::auth::Mechanism;
use crate::codec::{xtext_decode, xtext_encode};
use crate::command::Parameter;
use crate::error::{Error, InvalidInput, PeerMisbehaved};
use crate::limits::ENVID_MAX;

/// Facts about the session an extension may use to decide whether it is
/// offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SessionInfo {
    /// TLS is active (RFC 3207).
    pub tls: bool,
    /// The client has authenticated (RFC 4954).
    pub authenticated: bool,
    /// The peer presented an authorised mesh identity ([`crate::PeerAuthorised`]).
    pub peer_authorised: bool,
}

/// Which command a parameter appears on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamContext {
    /// MAIL FROM.
    Mail,
    /// RCPT TO.
    Rcpt,
}

/// A caller-defined service extension: its EHLO keyword and parameters,
/// the MAIL/RCPT parameters and verbs it adds, and a validation hook.
pub trait Extension: fmt::Debug + Send + Sync {
    /// EHLO keyword (RFC 5321 4.1.1.1 `ehlo-keyword`), upper case.
    fn keyword(&self) -> &str;
    /// EHLO parameters after the keyword.
    fn ehlo_params(&self) -> Vec<String> {
        Vec::new()
    }
    /// Whether it is offered in this session.
    fn offered(&self, _session: &SessionInfo) -> bool {
        true
    }
    /// Upper-cased MAIL parameter keywords it accepts.
    fn mail_params(&self) -> &[&str] {
        &[]
    }
    /// Upper-cased RCPT parameter keywords it accepts.
    fn rcpt_params(&self) -> &[&str] {
        &[]
    }
    /// Upper-cased verbs it adds; the server hands them to the application
    /// as [`crate::Event::ExtensionCommand`].
    fn verbs(&self) -> &[&str] {
        &[]
    }
    /// Validate one of its parameters.
    fn check_param(&self, _ctx: ParamContext, _param: &Parameter) -> Result<(), Error> {
        Ok(())
    }
}

/// `BODY` values (RFC 6152 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// `BODY=7BIT`.
    SevenBit,
    /// `BODY=8BITMIME`.
    EightBitMime,
}

/// DSN `RET` (RFC 3461 4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ret {
    /// Return the full message.
    Full,
    /// Return headers only.
    Hdrs,
}

/// DSN `NOTIFY` (RFC 3461 4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notify {
    /// `NEVER`.
    Never,
    /// Any of SUCCESS, FAILURE, DELAY.
    On {
        /// SUCCESS.
        success: bool,
        /// FAILURE.
        failure: bool,
        /// DELAY.
        delay: bool,
    },
}

/// DSN `ORCPT=addr-type;xtext` (RFC 3461 4.2), decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orcpt {
    /// Address type, e.g. `rfc822`.
    pub addr_type: String,
    /// The original recipient (xtext decoded).
    pub address: String,
}

/// Typed MAIL parameters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MailParams {
    /// `SIZE` (RFC 1870).
    pub size: Option<u64>,
    /// `BODY` (RFC 6152).
    pub body: Option<Body>,
    /// `SMTPUTF8` (RFC 6531).
    pub smtputf8: bool,
    /// `RET` (RFC 3461).
    pub ret: Option<Ret>,
    /// `ENVID` decoded (RFC 3461).
    pub envid: Option<String>,
    /// `AUTH=` decoded (RFC 4954 5); `None` also for `<>`.
    pub auth: Option<String>,
    /// `REQUIRETLS` (RFC 8689).
    pub requiretls: bool,
    /// Parameters of caller-defined extensions.
    pub other: Vec<Parameter>,
}

impl MailParams {
    /// Wire parameters.
    pub fn to_params(&self) -> Vec<Parameter> {
        let mut v = Vec::new();
        let p = |k: &str, val: Option<String>| Parameter {
            keyword: k.to_string(),
            value: val,
        };
        if let Some(s) = self.size {
            v.push(p("SIZE", Some(s.to_string())));
        }
        if let Some(b) = self.body {
            let val = match b {
                Body::SevenBit => "7BIT",
                Body::EightBitMime => "8BITMIME",
            };
            v.push(p("BODY", Some(val.into())));
        }
        if self.smtputf8 {
            v.push(p("SMTPUTF8", None));
        }
        if let Some(r) = self.ret {
            let val = match r {
                Ret::Full => "FULL",
                Ret::Hdrs => "HDRS",
            };
            v.push(p("RET", Some(val.into())));
        }
        if let Some(e) = &self.envid {
            v.push(p("ENVID", Some(xtext_encode(e))));
        }
        if let Some(a) = &self.auth {
            v.push(p("AUTH", Some(xtext_encode(a))));
        }
        if self.requiretls {
            v.push(p("REQUIRETLS", None));
        }
        v.extend(self.other.iter().cloned());
        v
    }
}

/// Typed RCPT parameters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RcptParams {
    /// `NOTIFY` (RFC 3461).
    pub notify: Option<Notify>,
    /// `ORCPT` (RFC 3461).
    pub orcpt: Option<Orcpt>,
    /// Parameters of caller-defined extensions.
    pub other: Vec<Parameter>,
}

impl RcptParams {
    /// Wire parameters.
    pub fn to_params(&self) -> Vec<Parameter> {
        let mut v = Vec::new();
        if let Some(n) = self.notify {
            let val = match n {
                Notify::Never => "NEVER".to_string(),
                Notify::On {
                    success,
                    failure,
                    delay,
                } => [(success, "SUCCESS"), (failure, "FAILURE"), (delay, "DELAY")]
                    .iter()
                    .filter(|(on, _)| *on)
                    .map(|(_, s)| *s)
                    .collect::<Vec<_>>()
                    .join(","),
            };
            v.push(Parameter {
                keyword: "NOTIFY".into(),
                value: Some(val),
            });
        }
        if let Some(o) = &self.orcpt {
            v.push(Parameter {
                keyword: "ORCPT".into(),
                value: Some(format!("{};{}", o.addr_type, xtext_encode(&o.address))),
            });
        }
        v.extend(self.other.iter().cloned());
        v
    }
}

/// The built-in extensions a server offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Builtins {
    /// PIPELINING (RFC 2920).
    pub pipelining: bool,
    /// SIZE (RFC 1870): advertise the message size limit.
    pub size: bool,
    /// 8BITMIME (RFC 6152).
    pub eightbitmime: bool,
    /// SMTPUTF8 (RFC 6531).
    pub smtputf8: bool,
    /// ENHANCEDSTATUSCODES (RFC 2034).
    pub enhanced_status_codes: bool,
    /// STARTTLS (RFC 3207): the application can run TLS.
    pub starttls: bool,
    /// AUTH mechanisms (RFC 4954); empty: no AUTH.
    pub auth: Vec<Mechanism>,
    /// Offer and accept AUTH only under TLS (server policy).
    pub auth_requires_tls: bool,
    /// CHUNKING (RFC 3030).
    pub chunking: bool,
    /// DSN (RFC 3461).
    pub dsn: bool,
    /// REQUIRETLS (RFC 8689), offered only under TLS.
    pub requiretls: bool,
    /// XSCOP, the internal envelope-facts extension, offered only to an
    /// authorised peer.
    pub xscop: bool,
}

impl Default for Builtins {
    fn default() -> Self {
        Builtins {
            pipelining: true,
            size: true,
            eightbitmime: true,
            smtputf8: true,
            enhanced_status_codes: true,
            starttls: true,
            auth: vec![Mechanism::Plain, Mechanism::Login],
            auth_requires_tls: true,
            chunking: true,
            dsn: true,
            requiretls: true,
            xscop: true,
        }
    }
}

/// The extensions a server offers: built-ins plus caller-defined ones.
#[derive(Debug, Default)]
pub struct Registry {
    /// Built-in extensions.
    pub builtins: Builtins,
    custom: Vec<Box<dyn Extension>>,
}

impl Registry {
    /// A registry with the given built-ins and no custom extension.
    pub fn new(builtins: Builtins) -> Self {
        Registry {
            builtins,
            custom: Vec::new(),
        }
    }

    /// Add a caller-defined extension.
    pub fn register(&mut self, ext: Box<dyn Extension>) {
        self.custom.push(ext);
    }

    /// Whether AUTH is offered in this session.
    pub fn auth_offered(&self, s: &SessionInfo) -> bool {
        !self.builtins.auth.is_empty() && (s.tls || !self.builtins.auth_requires_tls)
    }

    /// Whether any offered extension adds parameters or AUTH, so the longer
    /// command-line limit applies (RFC 5321 4.5.3.1.4).
    pub fn extended_lines(&self) -> bool {
        let b = &self.builtins;
        b.size
            || b.eightbitmime
            || b.smtputf8
            || b.dsn
            || !b.auth.is_empty()
            || b.xscop
            || !self.custom.is_empty()
    }

    /// The EHLO keyword lines (RFC 5321 4.1.1.1), message size in SIZE.
    pub fn ehlo_lines(&self, s: &SessionInfo, size: u64) -> Vec<String> {
        let b = &self.builtins;
        let mut v = Vec::new();
        if b.pipelining {
            v.push("PIPELINING".to_string());
        }
        if b.size {
            v.push(format!("SIZE {size}"));
        }
        if b.eightbitmime {
            v.push("8BITMIME".into());
        }
        if b.smtputf8 {
            v.push("SMTPUTF8".into());
        }
        if b.enhanced_status_codes {
            v.push("ENHANCEDSTATUSCODES".into());
        }
        if b.starttls && !s.tls {
            v.push("STARTTLS".into());
        }
        if self.auth_offered(s) && !s.authenticated {
            let names: Vec<&str> = b.auth.iter().map(|m| m.name()).collect();
            v.push(format!("AUTH {}", names.join(" ")));
        }
        if b.chunking {
            v.push("CHUNKING".into());
        }
        if b.dsn {
            v.push("DSN".into());
        }
        if b.requiretls && s.tls {
            v.push("REQUIRETLS".into());
        }
        if b.xscop && s.peer_authorised {
            v.push("XSCOP ADDR HELO LOGIN TLS SPAM".into());
        }
        for e in &self.custom {
            if e.offered(s) {
                let mut line = e.keyword().to_string();
                for p in e.ehlo_params() {
                    line.push(' ');
                    line.push_str(&p);
                }
                v.push(line);
            }
        }
        v
    }

    /// The custom extension declaring `verb`, if offered.
    pub fn verb(&self, verb: &str, s: &SessionInfo) -> Option<&dyn Extension> {
        self.custom
            .iter()
            .find(|e| e.offered(s) && e.verbs().iter().any(|v| v.eq_ignore_ascii_case(verb)))
            .map(|e| &**e)
    }

    fn custom_param(&self, ctx: ParamContext, p: &Parameter, s: &SessionInfo) -> Result<(), Error> {
        for e in &self.custom {
            let list = match ctx {
                ParamContext::Mail => e.mail_params(),
                ParamContext::Rcpt => e.rcpt_params(),
            };
            if e.offered(s) && list.iter().any(|k| k.eq_ignore_ascii_case(&p.keyword)) {
                return e.check_param(ctx, p);
            }
        }
        Err(PeerMisbehaved::UnknownParameter.into())
    }

    /// Validate MAIL parameters: each must belong to an offered extension
    /// (else 555 5.5.4, RFC 5321 4.1.1.11) and have a valid value.
    pub fn mail_params(
        &self,
        params: &[Parameter],
        s: &SessionInfo,
        max_size: u64,
    ) -> Result<MailParams, Error> {
        let b = &self.builtins;
        let mut out = MailParams::default();
        for p in params {
            let v = p.value.as_deref();
            match (p.keyword.as_str(), v) {
                ("SIZE", Some(v)) if b.size => {
                    if v.is_empty() || v.len() > 20 || !v.bytes().all(|c| c.is_ascii_digit()) {
                        return Err(InvalidInput::ParameterValue.into());
                    }
                    let n: u64 = v.parse().map_err(|_| InvalidInput::ParameterValue)?;
                    if n > max_size {
                        return Err(PeerMisbehaved::MessageTooBig.into());
                    }
                    out.size = Some(n);
                }
                ("BODY", Some(v)) if b.eightbitmime => {
                    out.body = Some(if v.eq_ignore_ascii_case("7BIT") {
                        Body::SevenBit
                    } else if v.eq_ignore_ascii_case("8BITMIME") {
                        Body::EightBitMime
                    } else {
                        return Err(InvalidInput::ParameterValue.into());
                    });
                }
                ("SMTPUTF8", None) if b.smtputf8 => out.smtputf8 = true,
                ("RET", Some(v)) if b.dsn => {
                    out.ret = Some(if v.eq_ignore_ascii_case("FULL") {
                        Ret::Full
                    } else if v.eq_ignore_ascii_case("HDRS") {
                        Ret::Hdrs
                    } else {
                        return Err(InvalidInput::ParameterValue.into());
                    });
                }
                ("ENVID", Some(v)) if b.dsn => {
                    let d = xtext_decode(v)?;
                    if d.len() > ENVID_MAX {
                        return Err(InvalidInput::ParameterValue.into());
                    }
                    out.envid = Some(d);
                }
                ("AUTH", Some(v)) if self.auth_offered(s) => {
                    out.auth = if v == "<>" {
                        None
                    } else {
                        Some(xtext_decode(v)?)
                    };
                }
                ("REQUIRETLS", None) if b.requiretls && s.tls => out.requiretls = true,
                ("SIZE" | "BODY" | "RET" | "ENVID" | "AUTH", None)
                | ("SMTPUTF8" | "REQUIRETLS", Some(_))
                    if self.builtin_mail_offered(&p.keyword, s) =>
                {
                    return Err(InvalidInput::ParameterValue.into());
                }
                _ => {
                    self.custom_param(ParamContext::Mail, p, s)?;
                    out.other.push(p.clone());
                }
            }
        }
        Ok(out)
    }

    fn builtin_mail_offered(&self, kw: &str, s: &SessionInfo) -> bool {
        let b = &self.builtins;
        match kw {
            "SIZE" => b.size,
            "BODY" => b.eightbitmime,
            "SMTPUTF8" => b.smtputf8,
            "RET" | "ENVID" => b.dsn,
            "AUTH" => self.auth_offered(s),
            "REQUIRETLS" => b.requiretls && s.tls,
            _ => false,
        }
    }

    /// Validate RCPT parameters (DSN NOTIFY/ORCPT and custom ones).
    pub fn rcpt_params(&self, params: &[Parameter], s: &SessionInfo) -> Result<RcptParams, Error> {
        let mut out = RcptParams::default();
        for p in params {
            match (p.keyword.as_str(), p.value.as_deref()) {
                ("NOTIFY", Some(v)) if self.builtins.dsn => out.notify = Some(parse_notify(v)?),
                ("ORCPT", Some(v)) if self.builtins.dsn => {
                    let (t, a) = v.split_once(';').ok_or(InvalidInput::ParameterValue)?;
                    if t.is_empty() || !t.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-') {
                        return Err(InvalidInput::ParameterValue.into());
                    }
                    out.orcpt = Some(Orcpt {
                        addr_type: t.to_string(),
                        address: xtext_decode(a)?,
                    });
                }
                ("NOTIFY" | "ORCPT", None) if self.builtins.dsn => {
                    return Err(InvalidInput::ParameterValue.into());
                }
                _ => {
                    self.custom_param(ParamContext::Rcpt, p, s)?;
                    out.other.push(p.clone());
                }
            }
        }
        Ok(out)
    }
}

fn parse_notify(v: &str) -> Result<Notify, Error> {
    if v.eq_ignore_ascii_case("NEVER") {
        return Ok(Notify::Never);
    }
    let (mut success, mut failure, mut delay) = (false, false, false);
    for part in v.split(',') {
        let flag = if part.eq_ignore_ascii_case("SUCCESS") {
            &mut success
        } else if part.eq_ignore_ascii_case("FAILURE") {
            &mut failure
        } else if part.eq_ignore_ascii_case("DELAY") {
            &mut delay
        } else {
            return Err(InvalidInput::ParameterValue.into());
        };
        if *flag {
            return Err(InvalidInput::ParameterValue.into());
        }
        *flag = true;
    }
    Ok(Notify::On {
        success,
        failure,
        delay,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(s: &[(&str, Option<&str>)]) -> Vec<Parameter> {
        s.iter()
            .map(|(k, v)| Parameter {
                keyword: k.to_string(),
                value: v.map(str::to_string),
            })
            .collect()
    }

    #[derive(Debug)]
    struct Xfoo;
    impl Extension for Xfoo {
        fn keyword(&self) -> &str {
            "XFOO"
        }
        fn mail_params(&self) -> &[&str] {
            &["XFOO"]
        }
        fn check_param(&self, _: ParamContext, p: &Parameter) -> Result<(), Error> {
            if p.value.as_deref() == Some("ok") {
                Ok(())
            } else {
                Err(InvalidInput::ParameterValue.into())
            }
        }
    }

    #[test]
    fn mail_params_validation() {
        let mut r = Registry::default();
        let s = SessionInfo::default();
        let m = r
            .mail_params(
                &params(&[
                    ("SIZE", Some("10")),
                    ("BODY", Some("8bitmime")),
                    ("ENVID", Some("a+2Bb")),
                ]),
                &s,
                100,
            )
            .unwrap();
        assert_eq!(m.size, Some(10));
        assert_eq!(m.body, Some(Body::EightBitMime));
        assert_eq!(m.envid.as_deref(), Some("a+b"));
        assert_eq!(
            r.mail_params(&params(&[("SIZE", Some("1000"))]), &s, 100),
            Err(PeerMisbehaved::MessageTooBig.into())
        );
        assert_eq!(
            r.mail_params(&params(&[("XFOO", Some("ok"))]), &s, 100),
            Err(PeerMisbehaved::UnknownParameter.into())
        );
        assert_eq!(
            r.mail_params(&params(&[("REQUIRETLS", None)]), &s, 100),
            Err(PeerMisbehaved::UnknownParameter.into())
        );
        r.register(Box::new(Xfoo));
        assert_eq!(
            r.mail_params(&params(&[("XFOO", Some("ok"))]), &s, 100)
                .unwrap()
                .other
                .len(),
            1
        );
        assert!(
            r.mail_params(&params(&[("XFOO", Some("no"))]), &s, 100)
                .is_err()
        );
        assert!(r.ehlo_lines(&s, 5).contains(&"XFOO".to_string()));
    }

    #[test]
    fn rcpt_params_validation() {
        let r = Registry::default();
        let s = SessionInfo::default();
        let p = r
            .rcpt_params(
                &params(&[
                    ("NOTIFY", Some("SUCCESS,DELAY")),
                    ("ORCPT", Some("rfc822;a+40b")),
                ]),
                &s,
            )
            .unwrap();
        assert_eq!(
            p.notify,
            Some(Notify::On {
                success: true,
                failure: false,
                delay: true
            })
        );
        assert_eq!(p.orcpt.unwrap().address, "a@b");
        assert!(
            r.rcpt_params(&params(&[("NOTIFY", Some("NEVER,SUCCESS"))]), &s)
                .is_err()
        );
        let round = RcptParams {
            notify: Some(Notify::Never),
            orcpt: None,
            other: vec![],
        };
        assert_eq!(r.rcpt_params(&round.to_params(), &s).unwrap(), round);
    }
}
