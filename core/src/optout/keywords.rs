//! Which replies mean "stop sending me SMS" (or "start again").

use std::collections::HashSet;

/// OPT_OUT_KEYWORDS when unset: the usual English words carriers honour, and the Chinese
/// ones Hong Kong recipients send (取消 cancel, 退订/退訂 unsubscribe in simplified and
/// traditional script, 停止 stop).
pub const DEFAULT_OPT_OUT: &str = "STOP,UNSUBSCRIBE,STOPALL,CANCEL,END,QUIT,取消,退订,退訂,停止";

/// OPT_IN_KEYWORDS when unset: what undoes an opt-out made by reply.
pub const DEFAULT_OPT_IN: &str = "START,UNSTOP";

/// What a received SMS asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// Put the sender on the global opt-out list.
    OptOut,
    /// Take the sender off the global list, if a reply put it there.
    OptIn,
    /// An ordinary SMS.
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeywordError {
    #[error("needs at least one keyword, comma-separated (e.g. {DEFAULT_OPT_OUT})")]
    Empty,
    #[error("`{0}` is both an opt-out and an opt-in keyword")]
    Both(String),
}

/// The opt-out and opt-in keywords, case-folded. A reply matches when its whole text,
/// trimmed and case-folded, is one of them: "stop" and " Stop\n" opt out, "please stop
/// texting me" does not (a sentence is for a human to read, and a false opt-out loses a
/// recipient for good).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keywords {
    opt_out: HashSet<String>,
    opt_in: HashSet<String>,
}

impl Keywords {
    /// Parses comma-separated lists (as OPT_OUT_KEYWORDS and OPT_IN_KEYWORDS hold them).
    /// Blank entries are ignored; the opt-in list may be empty (opting back in by reply is
    /// then off), the opt-out list may not.
    pub fn parse(opt_out: &str, opt_in: &str) -> Result<Keywords, KeywordError> {
        let opt_out = fold_list(opt_out);
        let opt_in = fold_list(opt_in);
        if opt_out.is_empty() {
            return Err(KeywordError::Empty);
        }
        if let Some(both) = opt_out.intersection(&opt_in).next() {
            return Err(KeywordError::Both(both.clone()));
        }
        Ok(Keywords { opt_out, opt_in })
    }

    /// What `text` (a received SMS, reassembled) asks for.
    pub fn classify(&self, text: &str) -> Reply {
        let folded = fold(text);
        if self.opt_out.contains(&folded) {
            Reply::OptOut
        } else if self.opt_in.contains(&folded) {
            Reply::OptIn
        } else {
            Reply::Other
        }
    }
}

impl Default for Keywords {
    fn default() -> Keywords {
        Keywords::parse(DEFAULT_OPT_OUT, DEFAULT_OPT_IN).expect("the default keywords parse")
    }
}

/// Trimmed and lower-cased. Full Unicode lower-casing is enough folding here: the keywords
/// are English words and Han characters, which have no case.
fn fold(text: &str) -> String {
    text.trim().to_lowercase()
}

fn fold_list(list: &str) -> HashSet<String> {
    list.split(',')
        .map(fold)
        .filter(|k| !k.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keyword_alone_matches_whatever_its_case_and_surrounding_space() {
        let k = Keywords::default();
        for text in [
            "STOP",
            "stop",
            " Stop\n",
            "UnSubscribe",
            "stopall",
            "quit",
            "END ",
        ] {
            assert_eq!(k.classify(text), Reply::OptOut, "{text:?}");
        }
        for text in ["取消", " 退订 ", "退訂", "停止"] {
            assert_eq!(k.classify(text), Reply::OptOut, "{text:?}");
        }
        assert_eq!(k.classify("start"), Reply::OptIn);
        assert_eq!(k.classify(" UNSTOP"), Reply::OptIn);
    }

    #[test]
    fn a_sentence_containing_a_keyword_is_not_an_opt_out() {
        let k = Keywords::default();
        for text in [
            "please stop",
            "STOP!",
            "don't stop",
            "取消訂閱吧",
            "",
            "   ",
            "S T O P",
        ] {
            assert_eq!(k.classify(text), Reply::Other, "{text:?}");
        }
    }

    #[test]
    fn configured_lists_replace_the_defaults() {
        let k = Keywords::parse(" Halt , ,BASTA", "").unwrap();
        assert_eq!(k.classify("halt"), Reply::OptOut);
        assert_eq!(k.classify("basta"), Reply::OptOut);
        assert_eq!(k.classify("stop"), Reply::Other);
        assert_eq!(k.classify("start"), Reply::Other, "opt-in by reply is off");
    }

    #[test]
    fn an_empty_or_contradictory_list_is_refused() {
        assert_eq!(Keywords::parse(" , ", "START"), Err(KeywordError::Empty));
        assert_eq!(
            Keywords::parse("STOP,start", "Start"),
            Err(KeywordError::Both("start".into()))
        );
    }
}
