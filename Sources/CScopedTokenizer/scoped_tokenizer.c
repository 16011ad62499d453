#include "scoped_tokenizer.h"

#include <string.h>

/// An instance: the wrapped tokenizer's methods and its instance.
typedef struct {
    fts5_tokenizer wrapped;
    Fts5Tokenizer *instance;
} ScopedTokenizer;

/// What one xTokenize call passes through: FTS5's callback, the scope, where the words start
/// in the caller's text, and a buffer for the scoped tokens (grown as a longer token needs).
typedef struct {
    void *context;
    int (*token)(void *context, int flags, const char *token, int length, int start, int end);
    int offset;
    char *bytes;
    int capacity;
    int scopeLength;
    char stack[128];
} Emitter;

static int scoped_create(void *context, const char **arguments, int count, Fts5Tokenizer **out) {
    fts5_api *api = context;
    *out = NULL;
    if (count < 1) return SQLITE_ERROR;  // which tokenizer to wrap must be said
    void *wrappedContext = NULL;
    fts5_tokenizer wrapped;
    int rc = api->xFindTokenizer(api, arguments[0], &wrappedContext, &wrapped);
    if (rc != SQLITE_OK) return rc;
    ScopedTokenizer *tokenizer = sqlite3_malloc(sizeof *tokenizer);
    if (tokenizer == NULL) return SQLITE_NOMEM;
    tokenizer->wrapped = wrapped;
    rc = wrapped.xCreate(wrappedContext, arguments + 1, count - 1, &tokenizer->instance);
    if (rc != SQLITE_OK) {
        sqlite3_free(tokenizer);
        return rc;
    }
    *out = (Fts5Tokenizer *)tokenizer;
    return SQLITE_OK;
}

static void scoped_delete(Fts5Tokenizer *pointer) {
    ScopedTokenizer *tokenizer = (ScopedTokenizer *)pointer;
    tokenizer->wrapped.xDelete(tokenizer->instance);
    sqlite3_free(tokenizer);
}

/// The wrapped tokenizer's callback: the token after the scope, at its place in the whole text.
static int scoped_token(void *pointer, int flags, const char *token, int length, int start, int end) {
    Emitter *emitter = pointer;
    int needed = emitter->scopeLength + 1 + length;
    if (needed > emitter->capacity) {
        char *grown = sqlite3_malloc(needed);
        if (grown == NULL) return SQLITE_NOMEM;
        memcpy(grown, emitter->bytes, emitter->scopeLength + 1);
        if (emitter->bytes != emitter->stack) sqlite3_free(emitter->bytes);
        emitter->bytes = grown;
        emitter->capacity = needed;
    }
    memcpy(emitter->bytes + emitter->scopeLength + 1, token, length);
    return emitter->token(
        emitter->context, flags, emitter->bytes, needed, start + emitter->offset, end + emitter->offset);
}

static int scoped_tokenize(
    Fts5Tokenizer *pointer, void *context, int flags, const char *text, int length,
    int (*token)(void *context, int flags, const char *token, int length, int start, int end)) {
    ScopedTokenizer *tokenizer = (ScopedTokenizer *)pointer;
    int scope = 0;
    while (scope < length && scope < SCOPED_TOKENIZER_MAXIMUM_SCOPE && text[scope] >= '0' && text[scope] <= '9') {
        scope += 1;
    }
    if (scope == 0 || scope >= length || text[scope] != SCOPED_TOKENIZER_SEPARATOR) {
        return tokenizer->wrapped.xTokenize(tokenizer->instance, context, flags, text, length, token);
    }
    Emitter emitter = {
        .context = context, .token = token, .offset = scope + 1, .capacity = sizeof emitter.stack,
        .scopeLength = scope};
    emitter.bytes = emitter.stack;
    memcpy(emitter.bytes, text, scope + 1);
    int rc = tokenizer->wrapped.xTokenize(
        tokenizer->instance, &emitter, flags, text + scope + 1, length - scope - 1, scoped_token);
    if (emitter.bytes != emitter.stack) sqlite3_free(emitter.bytes);
    return rc;
}

int scoped_tokenizer_register(sqlite3 *db) {
    // FTS5 hands out its API through a pointer bound to `SELECT fts5(?1)`.
    fts5_api *api = NULL;
    sqlite3_stmt *statement = NULL;
    int rc = sqlite3_prepare_v2(db, "SELECT fts5(?1)", -1, &statement, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_bind_pointer(statement, 1, (void *)&api, "fts5_api_ptr", NULL);
    if (rc == SQLITE_OK) rc = sqlite3_step(statement) == SQLITE_ROW ? SQLITE_OK : sqlite3_errcode(db);
    sqlite3_finalize(statement);
    if (rc != SQLITE_OK) return rc;
    if (api == NULL || api->iVersion < 2) return SQLITE_ERROR;
    fts5_tokenizer methods = {scoped_create, scoped_delete, scoped_tokenize};
    return api->xCreateTokenizer(api, "scoped", api, &methods, NULL);
}
