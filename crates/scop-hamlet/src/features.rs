//! The generator-side feature report: which constructs a message contains.

macro_rules! features {
    ($($(#[$doc:meta])* $name:ident => $text:literal,)*) => {
        /// A construct the generator can put into a message.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum Feature {
            $($(#[$doc])* $name,)*
        }

        impl Feature {
            /// Every feature, in declaration order.
            pub const ALL: &'static [Feature] = &[$(Feature::$name,)*];

            /// A short stable name, e.g. `subject-encoded-b`.
            pub fn name(self) -> &'static str {
                match self {
                    $(Feature::$name => $text,)*
                }
            }
        }
    };
}

features! {
    /// Display name made of atoms: `Horatio <horatio@...>`.
    DisplayNamePlain => "display-name-plain",
    /// Quoted display name containing specials: `"Polonius, Lord" <...>`.
    DisplayNameQuoted => "display-name-quoted",
    /// Quoted display name with `\"` or `\\` escapes.
    DisplayNameEscaped => "display-name-escaped",
    /// RFC 2047 B-encoded display name.
    DisplayNameEncodedB => "display-name-encoded-b",
    /// RFC 2047 Q-encoded display name.
    DisplayNameEncodedQ => "display-name-encoded-q",
    /// RFC 6532 raw UTF-8 display name.
    DisplayNameUtf8 => "display-name-utf8",
    /// Bare addr-spec without display name.
    AddressBare => "address-bare",
    /// `<addr-spec>` without display name.
    AddressAngleOnly => "address-angle-only",
    /// Comment (RFC 5322 CFWS) next to an address.
    AddressComment => "address-comment",
    /// Quoted local part: `"ophelia brook"@...`.
    AddressQuotedLocalPart => "address-quoted-local-part",
    /// RFC 6532 raw UTF-8 local part or domain.
    AddressUtf8 => "address-utf8",
    /// `undisclosed-recipients:;`.
    GroupUndisclosed => "group-undisclosed",
    /// Named group with members.
    GroupNamed => "group-named",
    /// Several From mailboxes plus Sender.
    FromMultipleWithSender => "from-multiple-sender",
    /// Cc header.
    HeaderCc => "header-cc",
    /// Reply-To header.
    HeaderReplyTo => "header-reply-to",
    /// Plain ASCII subject.
    SubjectAscii => "subject-ascii",
    /// Subject folded over several lines.
    SubjectFolded => "subject-folded",
    /// Subject with B encoded words.
    SubjectEncodedB => "subject-encoded-b",
    /// Subject with Q encoded words.
    SubjectEncodedQ => "subject-encoded-q",
    /// RFC 6532 raw UTF-8 subject.
    SubjectUtf8 => "subject-utf8",
    /// Subject mixing encoded words and plain ASCII text.
    SubjectMixed => "subject-mixed",
    /// Date without day of week.
    DateNoWeekday => "date-no-weekday",
    /// Date without seconds.
    DateNoSeconds => "date-no-seconds",
    /// Date with a negative zone offset.
    DateNegativeZone => "date-negative-zone",
    /// Date with a positive zone offset.
    DatePositiveZone => "date-positive-zone",
    /// Date with `-0000` (unknown local zone).
    DateMinusZero => "date-minus-zero",
    /// Message-ID header.
    MessageId => "message-id",
    /// In-Reply-To header.
    InReplyTo => "in-reply-to",
    /// References header with at least 5 ids (folded).
    ReferencesLong => "references-long",
    /// At least one Received header.
    Received => "received",
    /// At least three Received headers.
    ReceivedChain => "received-chain",
    /// X- headers.
    XHeaders => "x-headers",
    /// MIME-Version with a comment.
    MimeVersionComment => "mime-version-comment",
    /// Plain RFC 5322 message without any MIME header.
    NoMime => "no-mime",
    /// A header field folded over three or more lines.
    LongFoldedHeader => "long-folded-header",
    /// Encoded word in UTF-8.
    HeaderUtf8 => "header-charset-utf-8",
    /// Encoded word in ISO-8859-1.
    HeaderLatin1 => "header-charset-iso-8859-1",
    /// Encoded word in ISO-8859-2.
    HeaderLatin2 => "header-charset-iso-8859-2",
    /// Encoded word in ISO-8859-5.
    HeaderCyrillic => "header-charset-iso-8859-5",
    /// Encoded word in ISO-8859-7.
    HeaderGreek => "header-charset-iso-8859-7",
    /// Encoded word in ISO-8859-15.
    HeaderLatin9 => "header-charset-iso-8859-15",
    /// Encoded word in Windows-1251.
    HeaderCp1251 => "header-charset-windows-1251",
    /// Encoded word in Windows-1252.
    HeaderCp1252 => "header-charset-windows-1252",
    /// Encoded word in KOI8-R.
    HeaderKoi8r => "header-charset-koi8-r",
    /// Encoded word in ISO-2022-JP.
    HeaderIso2022jp => "header-charset-iso-2022-jp",
    /// Encoded word in Shift_JIS.
    HeaderSjis => "header-charset-shift_jis",
    /// Encoded word in EUC-KR.
    HeaderEuckr => "header-charset-euc-kr",
    /// Encoded word in GB2312.
    HeaderGb2312 => "header-charset-gb2312",
    /// Encoded word in GBK.
    HeaderGbk => "header-charset-gbk",
    /// Encoded word in Big5.
    HeaderBig5 => "header-charset-big5",
    /// Text body in US-ASCII.
    BodyUsAscii => "body-charset-us-ascii",
    /// Text body in UTF-8.
    BodyUtf8 => "body-charset-utf-8",
    /// Text body in ISO-8859-1.
    BodyLatin1 => "body-charset-iso-8859-1",
    /// Text body in ISO-8859-2.
    BodyLatin2 => "body-charset-iso-8859-2",
    /// Text body in ISO-8859-5.
    BodyCyrillic => "body-charset-iso-8859-5",
    /// Text body in ISO-8859-7.
    BodyGreek => "body-charset-iso-8859-7",
    /// Text body in ISO-8859-15.
    BodyLatin9 => "body-charset-iso-8859-15",
    /// Text body in Windows-1251.
    BodyCp1251 => "body-charset-windows-1251",
    /// Text body in Windows-1252.
    BodyCp1252 => "body-charset-windows-1252",
    /// Text body in KOI8-R.
    BodyKoi8r => "body-charset-koi8-r",
    /// Text body in ISO-2022-JP.
    BodyIso2022jp => "body-charset-iso-2022-jp",
    /// Text body in Shift_JIS.
    BodySjis => "body-charset-shift_jis",
    /// Text body in EUC-KR.
    BodyEuckr => "body-charset-euc-kr",
    /// Text body in GB2312.
    BodyGb2312 => "body-charset-gb2312",
    /// Text body in GBK.
    BodyGbk => "body-charset-gbk",
    /// Text body in Big5.
    BodyBig5 => "body-charset-big5",
    /// French text.
    LangFrench => "lang-french",
    /// German text.
    LangGerman => "lang-german",
    /// Spanish text.
    LangSpanish => "lang-spanish",
    /// Polish, Czech or Hungarian text.
    LangCentralEuropean => "lang-central-european",
    /// Russian text.
    LangRussian => "lang-russian",
    /// Greek text.
    LangGreek => "lang-greek",
    /// Japanese text.
    LangJapanese => "lang-japanese",
    /// Korean text.
    LangKorean => "lang-korean",
    /// Chinese text.
    LangChinese => "lang-chinese",
    /// Arabic text.
    LangArabic => "lang-arabic",
    /// Hebrew text.
    LangHebrew => "lang-hebrew",
    /// Emoji (outside the Basic Multilingual Plane).
    LangEmoji => "lang-emoji",
    /// text/plain part.
    TextPlain => "text-plain",
    /// text/plain with format=flowed.
    TextFlowed => "text-plain-flowed",
    /// text/html part.
    TextHtml => "text-html",
    /// HTML character entities.
    HtmlEntities => "html-entities",
    /// HTML links.
    HtmlLinks => "html-links",
    /// Content-Transfer-Encoding: 7bit (explicit).
    Cte7bit => "cte-7bit",
    /// No Content-Transfer-Encoding header (7bit by default).
    CteDefault => "cte-default",
    /// Content-Transfer-Encoding: 8bit.
    Cte8bit => "cte-8bit",
    /// Content-Transfer-Encoding: binary.
    CteBinary => "cte-binary",
    /// Content-Transfer-Encoding: quoted-printable.
    CteQuotedPrintable => "cte-quoted-printable",
    /// Content-Transfer-Encoding: base64.
    CteBase64 => "cte-base64",
    /// Quoted-printable soft line break.
    QpSoftBreak => "qp-soft-break",
    /// Quoted-printable encoded trailing whitespace.
    QpTrailingWhitespace => "qp-trailing-whitespace",
    /// 7bit/8bit body line longer than 78 bytes.
    LongBodyLine => "long-body-line",
    /// Single-part message.
    SinglePart => "single-part",
    /// multipart/mixed.
    MultipartMixed => "multipart-mixed",
    /// multipart/alternative.
    MultipartAlternative => "multipart-alternative",
    /// multipart/related.
    MultipartRelated => "multipart-related",
    /// multipart/digest.
    MultipartDigest => "multipart-digest",
    /// Digest part without Content-Type (message/rfc822 by default).
    DigestDefaultType => "digest-default-type",
    /// Digest part with explicit Content-Type: message/rfc822.
    DigestExplicitType => "digest-explicit-type",
    /// Multiparts nested three levels deep.
    NestedDepth3 => "nested-depth-3",
    /// Multiparts nested five levels deep.
    NestedDepth5 => "nested-depth-5",
    /// message/rfc822 part.
    MessageRfc822 => "message-rfc822",
    /// message/rfc822 inside a message/rfc822.
    MessageRfc822Nested => "message-rfc822-nested",
    /// Multipart preamble.
    Preamble => "preamble",
    /// Multipart epilogue.
    Epilogue => "epilogue",
    /// Body part without any header (text/plain by default).
    PartWithoutHeaders => "part-without-headers",
    /// application/pdf attachment.
    AttachmentPdf => "attachment-pdf",
    /// image/png attachment.
    AttachmentPng => "attachment-png",
    /// application/zip attachment.
    AttachmentZip => "attachment-zip",
    /// application/octet-stream attachment.
    AttachmentOctetStream => "attachment-octet-stream",
    /// text/calendar attachment.
    AttachmentCalendar => "attachment-calendar",
    /// text/csv attachment.
    AttachmentCsv => "attachment-csv",
    /// Inline image referenced by Content-ID from HTML.
    InlineImageCid => "inline-image-cid",
    /// `filename="..."`.
    FilenameQuoted => "filename-quoted",
    /// `filename=token`.
    FilenameToken => "filename-token",
    /// RFC 2231 `filename*=utf-8''...`.
    FilenameRfc2231 => "filename-rfc2231",
    /// RFC 2231 `filename*=charset'lang'...` with a language.
    FilenameRfc2231Language => "filename-rfc2231-language",
    /// RFC 2231 encoded continuations `filename*0*=`, `filename*1*=`.
    FilenameContinuationEncoded => "filename-continuation-encoded",
    /// RFC 2231 plain continuations `filename*0=`, `filename*1=`.
    FilenameContinuationPlain => "filename-continuation-plain",
    /// Content-Type `name=` parameter.
    ContentTypeName => "content-type-name",
    /// Quoted boundary parameter.
    BoundaryQuoted => "boundary-quoted",
    /// Unquoted boundary parameter.
    BoundaryUnquoted => "boundary-unquoted",
    /// Quoted charset parameter.
    CharsetQuoted => "charset-quoted",
    /// Unquoted charset parameter.
    CharsetUnquoted => "charset-unquoted",
    /// Date followed by a comment: `+0100 (CET)`.
    DateComment => "date-comment",
    /// Subject with encoded words in two different charsets.
    SubjectMultiCharset => "subject-multi-charset",
    /// text/plain without a charset parameter (US-ASCII by default).
    CharsetDefault => "charset-default",
    /// base64 with lines shorter than 76 characters.
    Base64ShortLines => "base64-short-lines",
    /// Attachment with an empty body.
    EmptyBody => "empty-body",
}

/// The set of [`Feature`]s one message contains.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Features {
    bits: [u64; 3],
}

impl Features {
    /// Whether `feature` occurs in the message.
    pub fn contains(&self, feature: Feature) -> bool {
        let i = feature as usize;
        self.bits[i / 64] & (1 << (i % 64)) != 0
    }

    pub(crate) fn insert(&mut self, feature: Feature) {
        let i = feature as usize;
        self.bits[i / 64] |= 1 << (i % 64);
    }

    /// The features present, in declaration order.
    pub fn iter(&self) -> impl Iterator<Item = Feature> + '_ {
        Feature::ALL.iter().copied().filter(|f| self.contains(*f))
    }
}

// The bitset must hold every feature.
const _: () = assert!(Feature::ALL.len() <= 192);
