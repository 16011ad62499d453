#ifndef SCOPED_TOKENIZER_H
#define SCOPED_TOKENIZER_H

#include <sqlite3.h>

/// The byte between a text's scope and its words: "12345\x01words...".
#define SCOPED_TOKENIZER_SEPARATOR '\x01'

/// The most digits a scope may have (a decimal UInt64 has at most 20).
#define SCOPED_TOKENIZER_MAXIMUM_SCOPE 20

/// Registers the FTS5 tokenizer `scoped` on `db`: `tokenize = 'scoped porter unicode61 ...'`
/// wraps the tokenizer its arguments name. A text that starts with a scope (1-20 ASCII digits,
/// then SCOPED_TOKENIZER_SEPARATOR) is tokenized after it by the wrapped tokenizer, and each
/// token it gives becomes scope + separator + token: the words of one scope have doclists of
/// their own. Any other text (a bare scope included) is tokenized as the wrapped tokenizer does.
/// The same holds for queries, so a phrase "12345\x01word" matches `word` in that scope only.
/// Returns an SQLite result code.
int scoped_tokenizer_register(sqlite3 *db);

#endif
