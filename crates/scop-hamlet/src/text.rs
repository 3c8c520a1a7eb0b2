//! Text sources: lines of Shakespeare's *Hamlet* (public domain) and short
//! multilingual snippets, grouped by the legacy charsets that can represent
//! them.

use crate::features::Feature;

/// Lines from *Hamlet* (public domain), ASCII only.
pub(crate) const HAMLET: &[&str] = &[
    "Who's there?",
    "Nay, answer me: stand, and unfold yourself.",
    "Long live the king!",
    "You come most carefully upon your hour.",
    "'Tis now struck twelve; get thee to bed, Francisco.",
    "For this relief much thanks: 'tis bitter cold,",
    "And I am sick at heart.",
    "Have you had quiet guard? Not a mouse stirring.",
    "What, has this thing appear'd again to-night?",
    "Tush, tush, 'twill not appear.",
    "Look, where it comes again!",
    "In the same figure, like the king that's dead.",
    "Thou art a scholar; speak to it, Horatio.",
    "But, look, the morn, in russet mantle clad,",
    "Walks o'er the dew of yon high eastward hill:",
    "A little more than kin, and less than kind.",
    "Not so, my lord; I am too much i' the sun.",
    "Seems, madam! nay it is; I know not 'seems.'",
    "O, that this too too solid flesh would melt",
    "Thaw and resolve itself into a dew!",
    "Or that the Everlasting had not fix'd",
    "His canon 'gainst self-slaughter! O God! God!",
    "How weary, stale, flat and unprofitable,",
    "Seem to me all the uses of this world!",
    "Frailty, thy name is woman!",
    "Thrift, thrift, Horatio! the funeral baked meats",
    "Did coldly furnish forth the marriage tables.",
    "He was a man, take him for all in all,",
    "I shall not look upon his like again.",
    "Neither a borrower nor a lender be;",
    "For loan oft loses both itself and friend,",
    "And borrowing dulls the edge of husbandry.",
    "This above all: to thine ownself be true,",
    "And it must follow, as the night the day,",
    "Thou canst not then be false to any man.",
    "Something is rotten in the state of Denmark.",
    "Angels and ministers of grace defend us!",
    "I am thy father's spirit,",
    "Doom'd for a certain term to walk the night,",
    "Revenge his foul and most unnatural murder.",
    "Murder most foul, as in the best it is;",
    "O my prophetic soul! My uncle!",
    "There are more things in heaven and earth, Horatio,",
    "Than are dreamt of in your philosophy.",
    "The time is out of joint: O cursed spite,",
    "That ever I was born to set it right!",
    "Brevity is the soul of wit.",
    "Though this be madness, yet there is method in't.",
    "What a piece of work is a man! how noble in reason!",
    "how infinite in faculty! in form and moving how",
    "express and admirable! in action how like an angel!",
    "in apprehension how like a god! the beauty of the",
    "world! the paragon of animals!",
    "I am but mad north-north-west: when the wind is",
    "southerly I know a hawk from a handsaw.",
    "The play's the thing",
    "Wherein I'll catch the conscience of the king.",
    "To be, or not to be: that is the question:",
    "Whether 'tis nobler in the mind to suffer",
    "The slings and arrows of outrageous fortune,",
    "Or to take arms against a sea of troubles,",
    "And by opposing end them? To die: to sleep;",
    "No more; and by a sleep to say we end",
    "The heart-ache and the thousand natural shocks",
    "That flesh is heir to, 'tis a consummation",
    "Devoutly to be wish'd. To die, to sleep;",
    "To sleep: perchance to dream: ay, there's the rub;",
    "For in that sleep of death what dreams may come",
    "When we have shuffled off this mortal coil,",
    "Must give us pause: there's the respect",
    "That makes calamity of so long life;",
    "Get thee to a nunnery: why wouldst thou be a",
    "breeder of sinners?",
    "Speak the speech, I pray you, as I pronounced it to",
    "you, trippingly on the tongue.",
    "Suit the action to the word, the word to the action.",
    "The lady doth protest too much, methinks.",
    "'Tis now the very witching time of night,",
    "When churchyards yawn and hell itself breathes out",
    "Contagion to this world.",
    "My words fly up, my thoughts remain below:",
    "Words without thoughts never to heaven go.",
    "How now! a rat? Dead, for a ducat, dead!",
    "I must be cruel, only to be kind.",
    "When sorrows come, they come not single spies,",
    "But in battalions.",
    "There's rosemary, that's for remembrance; pray,",
    "love, remember: and there is pansies, that's for thoughts.",
    "Alas, poor Yorick! I knew him, Horatio: a fellow",
    "of infinite jest, of most excellent fancy.",
    "Imperious Caesar, dead and turn'd to clay,",
    "Might stop a hole to keep the wind away.",
    "Sweets to the sweet: farewell!",
    "There's a divinity that shapes our ends,",
    "Rough-hew them how we will.",
    "There's a special providence in the fall of a",
    "sparrow. If it be now, 'tis not to come; if it be",
    "not to come, it will be now; if it be not now, yet",
    "it will come: the readiness is all.",
    "A hit, a very palpable hit.",
    "The drink, the drink! I am poison'd.",
    "O, I die, Horatio;",
    "The potent poison quite o'er-crows my spirit:",
    "The rest is silence.",
    "Now cracks a noble heart. Good night, sweet prince:",
    "And flights of angels sing thee to thy rest!",
    "Go, bid the soldiers shoot.",
];

/// Names of the characters, used for addresses and display names.
pub(crate) const PEOPLE: &[(&str, &str)] = &[
    ("Hamlet", "hamlet"),
    ("Horatio", "horatio"),
    ("Ophelia", "ophelia"),
    ("Polonius", "polonius"),
    ("Laertes", "laertes"),
    ("Gertrude", "gertrude"),
    ("Claudius", "claudius"),
    ("Rosencrantz", "rosencrantz"),
    ("Guildenstern", "guildenstern"),
    ("Marcellus", "marcellus"),
    ("Bernardo", "bernardo"),
    ("Francisco", "francisco"),
    ("Reynaldo", "reynaldo"),
    ("Osric", "osric"),
    ("Fortinbras", "fortinbras"),
    ("Voltemand", "voltemand"),
    ("Cornelius", "cornelius"),
    ("Yorick", "yorick"),
];

pub(crate) const DOMAINS: &[&str] = &[
    "elsinore.example",
    "wittenberg.example.edu",
    "denmark.example",
    "norway.example",
    "globe-theatre.example.org",
    "kronborg.example",
    "paris.example.fr",
    "court.example.net",
];

/// Display names that need quoting (contain RFC 5322 specials).
pub(crate) const QUOTED_NAMES: &[&str] = &[
    "Polonius, Lord Chamberlain",
    "Hamlet (Prince of Denmark)",
    "Claudius, King; Usurper",
    "Dr. Horatio <Scholar>",
    "Gertrude @ Court",
    "Osric [Courtier]",
    "Guildenstern: Rosencrantz's friend",
    "First Gravedigger, Esq.",
];

/// Display names with a quote character, written with `\"` escapes.
pub(crate) const ESCAPED_NAMES: &[&str] = &[
    "Laertes \"the avenger\"",
    "The \"Ghost\" of Old Hamlet",
    "Yorick \"poor\" Jester",
    "Back\\slash \"Player\" King",
];

/// Unicode texts, each with the set of legacy charsets that represent it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Snippet {
    pub(crate) text: &'static str,
    /// The language feature the snippet exhibits.
    pub(crate) lang: Feature,
    /// Charset indexes (see `charset::CHARSETS`) able to encode the text.
    pub(crate) charsets: &'static [usize],
}

// Charset indexes, in the order of `charset::CHARSETS`.
pub(crate) const UTF8: usize = 0;
pub(crate) const LATIN1: usize = 1;
pub(crate) const LATIN2: usize = 2;
pub(crate) const CYRILLIC: usize = 3;
pub(crate) const GREEK: usize = 4;
pub(crate) const LATIN9: usize = 5;
pub(crate) const CP1251: usize = 6;
pub(crate) const CP1252: usize = 7;
pub(crate) const KOI8R: usize = 8;
pub(crate) const ISO2022JP: usize = 9;
pub(crate) const SJIS: usize = 10;
pub(crate) const EUCKR: usize = 11;
pub(crate) const GB2312: usize = 12;
pub(crate) const GBK: usize = 13;
pub(crate) const BIG5: usize = 14;

pub(crate) const SNIPPETS: &[Snippet] = &[
    Snippet {
        text: "Être ou ne pas être, voilà la question.",
        charsets: &[UTF8, LATIN1, LATIN9, CP1252],
        lang: Feature::LangFrench,
    },
    Snippet {
        text: "Où est Ophélie ? Près du ruisseau, hélas.",
        charsets: &[UTF8, LATIN1, LATIN9, CP1252],
        lang: Feature::LangFrench,
    },
    Snippet {
        text: "Sein oder Nichtsein, das ist hier die Frage. Schöne Grüße aus Helsingør!",
        charsets: &[UTF8, LATIN1, LATIN9, CP1252],
        lang: Feature::LangGerman,
    },
    Snippet {
        text: "Ser o no ser, ésa es la cuestión. ¿Quién está ahí?",
        charsets: &[UTF8, LATIN1, LATIN9, CP1252],
        lang: Feature::LangSpanish,
    },
    Snippet {
        text: "L'œuvre coûte 5 € à Helsingør.",
        charsets: &[UTF8, LATIN9, CP1252],
        lang: Feature::LangFrench,
    },
    Snippet {
        text: "“To be, or not to be” — Hamlet’s soliloquy… naïve café, 20 €",
        charsets: &[UTF8, CP1252],
        lang: Feature::LangFrench,
    },
    Snippet {
        text: "Być albo nie być, oto jest pytanie.",
        charsets: &[UTF8, LATIN2],
        lang: Feature::LangCentralEuropean,
    },
    Snippet {
        text: "Být, či nebýt - to je oč tu běží.",
        charsets: &[UTF8, LATIN2],
        lang: Feature::LangCentralEuropean,
    },
    Snippet {
        text: "Lenni vagy nem lenni: az itt a kérdés.",
        charsets: &[UTF8, LATIN2],
        lang: Feature::LangCentralEuropean,
    },
    Snippet {
        text: "Быть или не быть, вот в чём вопрос.",
        charsets: &[UTF8, CYRILLIC, CP1251, KOI8R],
        lang: Feature::LangRussian,
    },
    Snippet {
        text: "Гамлет, принц датский. Бедный Йорик!",
        charsets: &[UTF8, CYRILLIC, CP1251, KOI8R],
        lang: Feature::LangRussian,
    },
    Snippet {
        text: "«Гамлет» — трагедия Шекспира.",
        charsets: &[UTF8, CP1251],
        lang: Feature::LangRussian,
    },
    Snippet {
        text: "Να ζει κανείς ή να μη ζει, ιδού η απορία.",
        charsets: &[UTF8, GREEK],
        lang: Feature::LangGreek,
    },
    Snippet {
        text: "Άμλετ, πρίγκιπας της Δανίας.",
        charsets: &[UTF8, GREEK],
        lang: Feature::LangGreek,
    },
    Snippet {
        text: "生きるべきか、死ぬべきか、それが問題だ。",
        charsets: &[UTF8, ISO2022JP, SJIS],
        lang: Feature::LangJapanese,
    },
    Snippet {
        text: "デンマークの王子ハムレット",
        charsets: &[UTF8, ISO2022JP, SJIS],
        lang: Feature::LangJapanese,
    },
    Snippet {
        text: "사느냐 죽느냐, 그것이 문제로다.",
        charsets: &[UTF8, EUCKR],
        lang: Feature::LangKorean,
    },
    Snippet {
        text: "덴마크의 왕자 햄릿",
        charsets: &[UTF8, EUCKR],
        lang: Feature::LangKorean,
    },
    Snippet {
        text: "生存还是毁灭，这是一个值得考虑的问题。",
        charsets: &[UTF8, GB2312, GBK],
        lang: Feature::LangChinese,
    },
    Snippet {
        text: "丹麦王子哈姆雷特",
        charsets: &[UTF8, GB2312, GBK],
        lang: Feature::LangChinese,
    },
    Snippet {
        text: "生存還是毀滅，這是一個值得考慮的問題。",
        charsets: &[UTF8, BIG5],
        lang: Feature::LangChinese,
    },
    Snippet {
        text: "丹麥王子哈姆雷特",
        charsets: &[UTF8, BIG5],
        lang: Feature::LangChinese,
    },
    Snippet {
        text: "أكون أو لا أكون، تلك هي المسألة.",
        charsets: &[UTF8],
        lang: Feature::LangArabic,
    },
    Snippet {
        text: "להיות או לא להיות, זאת השאלה.",
        charsets: &[UTF8],
        lang: Feature::LangHebrew,
    },
    Snippet {
        text: "👑 💀 🗡️ 🎭 — alas, poor Yorick 🃏",
        charsets: &[UTF8],
        lang: Feature::LangEmoji,
    },
];

/// Short non-ASCII display names, with the charsets able to encode them.
pub(crate) const NAMES: &[(&str, &[usize])] = &[
    ("Ophélie de Polonius", &[UTF8, LATIN1, LATIN9, CP1252]),
    ("Gertrude Königin", &[UTF8, LATIN1, LATIN9, CP1252, LATIN2]),
    ("Œdipe Coûteux", &[UTF8, LATIN9, CP1252]),
    ("José “Pepe” Núñez", &[UTF8, CP1252]),
    ("Łukasz Poloniusz", &[UTF8, LATIN2]),
    ("Гамлет Датский", &[UTF8, CYRILLIC, CP1251, KOI8R]),
    ("Офелия", &[UTF8, CYRILLIC, CP1251, KOI8R]),
    ("Οφηλία", &[UTF8, GREEK]),
    ("ハムレット", &[UTF8, ISO2022JP, SJIS]),
    ("햄릿 왕자", &[UTF8, EUCKR]),
    ("哈姆雷特", &[UTF8, GB2312, GBK, BIG5]),
    ("أوفيليا", &[UTF8]),
    ("Yorick 💀", &[UTF8]),
];
