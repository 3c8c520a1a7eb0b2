//! Tokenizer behaviour on hand-written messages: header tags, encoded
//! headers, HTML, URLs, CJK, attachments and double extensions.

use scop_spam::{Class, Danger, Model, tokenize};

fn tokens(msg: &str) -> Vec<String> {
    texts(&tokenize(msg.as_bytes()))
}

fn texts(f: &scop_spam::Features) -> Vec<String> {
    f.tokens().map(String::from).collect()
}

fn has(tokens: &[String], t: &str) -> bool {
    tokens.iter().any(|x| x == t)
}

#[track_caller]
fn assert_has(tokens: &[String], wanted: &[&str]) {
    for t in wanted {
        assert!(has(tokens, t), "missing token {t:?} in {tokens:?}");
    }
}

#[test]
fn header_tokens_are_tagged_by_field() {
    let t = tokens(
        "From: \"Best Deals\" <offers@mail.deals.example.com>\r\n\
         Reply-To: other@elsewhere.example\r\n\
         To: a@b.example, c@d.example\r\n\
         Subject: Lowest prices today\r\n\
         Received: from mx1.spammer.example (mx1.spammer.example [203.0.113.7])\r\n\
         \tby mail.example.org with ESMTP\r\n\
         X-Mailer: Mass Mailer Pro 5.0\r\n\
         Message-ID: <12345.abc@deals.example.com>\r\n\
         Content-Type: text/plain; charset=iso-8859-1\r\n\
         \r\n\
         Hello there.\r\n",
    );
    assert_has(
        &t,
        &[
            "from:name:best",
            "from:name:deals",
            "from:domain:mail.deals.example.com",
            "from:domain:deals.example.com",
            "from:domain:example.com",
            "reply-to:domain:elsewhere.example",
            "to:count:2",
            "subject:lowest",
            "subject:lowest prices",
            "received:mx1.spammer.example",
            "received:ip:203.0.113",
            "received:esmtp",
            "x-mailer:mass",
            "message-id:domain:deals.example.com",
            "content-type:text/plain",
            "charset:iso-8859-1",
            "header:x-mailer",
            "hello",
            "hello there",
        ],
    );
}

#[test]
fn encoded_headers_are_decoded() {
    let t = tokens(
        "From: =?utf-8?q?J=C3=BCrgen_M=C3=BCller?= <j@example.de>\r\n\
         Subject: =?iso-8859-1?q?Gr=FC=DFe_aus_K=F6ln?=\r\n\
         \r\n\
         body\r\n",
    );
    assert_has(
        &t,
        &[
            "from:name:jürgen",
            "from:name:müller",
            "subject:grüße",
            "subject:köln",
        ],
    );
    // A Japanese subject, UTF-8 in a base64 encoded word: 無料です ("it is free").
    let t = tokens("Subject: =?UTF-8?B?54Sh5paZ44Gn44GZ?=\r\n\r\nx\r\n");
    assert_has(&t, &["subject:無料", "subject:料で", "subject:です"]);
}

#[test]
fn html_is_reduced_to_text_with_link_hosts() {
    let t = tokens(
        "Content-Type: text/html\r\n\r\n\
         <html><body><p>Buy <b>vi<!-- hidden -->agra</b>&nbsp;now</p>\
         <a href=\"http://www.Pharmacy.example.net/order?id=1\">click here</a>\
         <img src=\"https://cdn.example.org/x.gif\"></body></html>\r\n",
    );
    assert_has(
        &t,
        &[
            "viagra",
            "buy viagra",
            "now",
            "click here",
            "url:www.pharmacy.example.net",
            "url:pharmacy.example.net",
            "url:example.net",
            "url:cdn.example.org",
            "url:path:order",
            "html:a",
            "html:img",
            "meta:html-only",
        ],
    );
    assert!(
        !has(&t, "body") && !has(&t, "href"),
        "tags leaked as words: {t:?}"
    );
}

#[test]
fn urls_in_plain_text() {
    let t = tokens(
        "Subject: x\r\n\r\nsee http://user@evil.example.com:8080/path and www.shop.example \
         and http://192.0.2.1/x\r\n",
    );
    assert_has(
        &t,
        &[
            "url:evil.example.com",
            "url:userinfo",
            "url:www.shop.example",
            "url:ip-host",
            "url:scheme:http",
        ],
    );
}

#[test]
fn cjk_text_becomes_bigrams() {
    let t =
        tokens("Content-Type: text/plain; charset=utf-8\r\n\r\n今すぐ登録 한국어 텍스트 中文\r\n");
    assert_has(
        &t,
        &[
            "今す", "すぐ", "ぐ登", "登録", "한국", "국어", "텍스", "스트", "中文",
        ],
    );
}

#[test]
fn quoted_printable_and_base64_bodies_are_decoded() {
    let t = tokens(
        "Content-Type: multipart/alternative; boundary=b\r\n\r\n\
         --b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
         Caf=C3=A9 cr=C3=A8me\r\n\
         --b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n\
         c2VjcmV0IHdvcmRz\r\n\
         --b--\r\n",
    );
    assert_has(
        &t,
        &[
            "café",
            "crème",
            "secret",
            "secret words",
            "content-type:multipart/alternative",
            "part-cte:base64",
        ],
    );
}

fn with_attachment(filename: &str, ctype: &str, content_b64: &str) -> Vec<u8> {
    format!(
        "Subject: your invoice\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\n\
         --zz\r\nContent-Type: text/plain\r\n\r\nPlease see the attached invoice.\r\n\
         --zz\r\nContent-Type: {ctype}; name=\"{filename}\"\r\n\
         Content-Disposition: attachment; filename=\"{filename}\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{content_b64}\r\n--zz--\r\n"
    )
    .into_bytes()
}

#[test]
fn attachments_and_double_extensions() {
    // "TVqQAAMAAAAEAAAA" is the base64 of an MZ (Windows executable) header.
    let f = tokenize(&with_attachment(
        "Invoice.PDF.exe",
        "application/octet-stream",
        "TVqQAAMAAAAEAAAA",
    ));
    assert_has(
        &texts(&f),
        &[
            "attach:ext:exe",
            "attach:double:pdf.exe",
            "attach:double-executable",
            "attach:executable",
            "attach:executable-content",
            "attach:type:application/octet-stream",
        ],
    );
    let a = &f.attachments[0];
    assert_eq!(a.filename.as_deref(), Some("Invoice.PDF.exe"));
    assert!(
        a.dangers
            .contains(&Danger::DoubleExtension("pdf.exe".into()))
    );
    assert!(
        a.dangers
            .contains(&Danger::ExecutableExtension("exe".into()))
    );
    assert!(a.dangers.contains(&Danger::ExecutableContent));

    let f = tokenize(&with_attachment(
        "report.xlsm",
        "application/vnd.ms-excel.sheet.macroEnabled.12",
        "AAAA",
    ));
    assert!(
        f.attachments[0]
            .dangers
            .contains(&Danger::MacroDocument("xlsm".into()))
    );

    let f = tokenize(&with_attachment("notes.tar.gz", "application/gzip", "AAAA"));
    assert_has(&texts(&f), &["attach:ext:gz", "attach:double:tar.gz"]);
    assert!(f.attachments[0].dangers.is_empty(), "{:?}", f.attachments);
    assert_eq!(f.dangerous().count(), 0);
}

#[test]
fn dangerous_attachments_are_flagged_whatever_the_score() {
    let mut model = Model::new();
    let ham = "Subject: your invoice\r\n\r\nPlease see the attached invoice, thanks.\r\n";
    for _ in 0..5 {
        model.train(ham.as_bytes(), Class::Ham);
        model.train(
            b"Subject: cheap pills\r\n\r\nbuy cheap pills online now\r\n",
            Class::Spam,
        );
    }
    let v = model.classify(&with_attachment(
        "invoice.pdf.scr",
        "application/octet-stream",
        "AAAA",
    ));
    assert!(v.score < 0.5, "the text looks like ham: {}", v.score);
    assert!(v.is_dangerous());
    assert_eq!(v.dangerous[0].filename.as_deref(), Some("invoice.pdf.scr"));
}

#[test]
fn shouted_words_get_a_caps_token() {
    let t = tokens("Subject: x\r\n\r\nACT NOW for FREE money, OK?\r\n");
    assert_has(
        &t,
        &["act", "caps:act", "caps:now", "caps:free", "free money"],
    );
    assert!(!has(&t, "caps:money") && !has(&t, "caps:ok"), "{t:?}");
}

#[test]
fn not_a_message_is_read_as_text() {
    let f = tokenize("this is not a message, just words\n".as_bytes());
    assert!(!f.parsed);
    assert_has(&texts(&f), &["words", "just words", "meta:not-a-message"]);
    assert!(tokenize(b"").tokens().any(|t| t == "meta:not-a-message"));
}

#[test]
fn clues_explain_the_verdict() {
    let mut model = Model::new();
    for i in 0..20 {
        model.train(
            format!("Subject: meeting {i}\r\n\r\nagenda for the project review\r\n").as_bytes(),
            Class::Ham,
        );
        model.train(
            format!("Subject: winner {i}\r\n\r\nclaim your lottery prize\r\n").as_bytes(),
            Class::Spam,
        );
    }
    let v = model.classify(b"Subject: winner\r\n\r\nclaim your prize today\r\n");
    assert_eq!(v.label, scop_spam::Label::Spam);
    assert!(
        v.clues
            .iter()
            .any(|c| c.token == "subject:winner" && c.probability > 0.9),
        "{:?}",
        v.clues
    );
    assert!(
        v.clues
            .windows(2)
            .all(|w| (w[0].probability - 0.5).abs() >= (w[1].probability - 0.5).abs())
    );
}
