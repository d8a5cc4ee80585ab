/*
 * chat_template — the chat-template API over the Jinja interpreter, and the
 * built-in fallback templates.
 *
 * Each render parses the template afresh: templates are a few KB and parse
 * in microseconds, which keeps the API stateless (no cache to invalidate or
 * lock). Callers that render one template many times can hold a
 * jinja_template themselves.
 *
 * The built-ins reproduce the published templates of each family (ChatML as
 * used by Qwen/Hermes, Llama 2 chat, Llama 3 instruct, Mistral instruct,
 * Gemma, Phi-3), with one deliberate change: where the original rejects a
 * system message (Mistral, Gemma), the fallback folds it into the first
 * user turn, since a fallback must accept any ordinary conversation.
 */
#include "engine/chat_template.h"
#include "engine/gguf.h"
#include "engine/tokenizer.h"

#include "engine/jinja.h"

#include <string.h>

static const char *const standard_vars[] = {
    "messages", "add_generation_prompt", "bos_token", "eos_token", "tools", NULL};

int tmpl_render_ex(const char *template_src, const tmpl_input *in, sb_t *out, cf_err *err) {
    if (!template_src) return cf_seterr(err, CF_EINVAL, "no chat template");
    json_t *messages = in->messages;
    if (!messages || !json_is_array(messages))
        return cf_seterr(err, CF_EINVAL, "messages must be a JSON array");
    for (size_t i = 0; i < json_array_size(messages); i++)
        if (!json_is_object(json_array_get(messages, i)))
            return cf_seterr(err, CF_EINVAL, "message %zu is not a JSON object", i);
    if (in->tools && !json_is_array(in->tools) && !json_is_null(in->tools))
        return cf_seterr(err, CF_EINVAL, "tools must be a JSON array");
    if (in->extra && !json_is_object(in->extra))
        return cf_seterr(err, CF_EINVAL, "extra template variables must be a JSON object");
    for (const char *const *v = standard_vars; in->extra && *v; v++)
        if (json_object_get(in->extra, *v))
            return cf_seterr(err, CF_EINVAL, "extra variable '%s' would replace a standard one",
                             *v);
    jinja_template *t = jinja_parse(template_src, strlen(template_src), err);
    if (!t) return err ? err->code : CF_EFORMAT;
    json_t *vars = json_object();
    if (in->extra) json_object_update(vars, in->extra);
    json_object_set(vars, "messages", messages);
    json_object_set_new(vars, "add_generation_prompt", json_boolean(in->add_generation_prompt));
    json_t *bos = json_string(in->bos ? in->bos : ""), *eos = json_string(in->eos ? in->eos : "");
    if (!bos || !eos) {
        json_decref(bos);
        json_decref(eos);
        json_decref(vars);
        jinja_free(t);
        return cf_seterr(err, CF_EINVAL, "%s token string is not valid UTF-8", bos ? "EOS" : "BOS");
    }
    json_object_set_new(vars, "bos_token", bos);
    json_object_set_new(vars, "eos_token", eos);
    if (in->tools) json_object_set(vars, "tools", in->tools);
    jinja_opts o = {.now_unix = in->now_unix};
    int rc = jinja_render(t, vars, &o, out, err);
    json_decref(vars);
    jinja_free(t);
    return rc;
}

int tmpl_render_at(const char *template_src, json_t *messages, bool add_generation_prompt,
                   const char *bos, const char *eos, json_t *tools, int64_t now_unix, sb_t *out,
                   cf_err *err) {
    tmpl_input in = {.messages = messages,
                     .add_generation_prompt = add_generation_prompt,
                     .bos = bos,
                     .eos = eos,
                     .tools = tools,
                     .now_unix = now_unix};
    return tmpl_render_ex(template_src, &in, out, err);
}

int tmpl_render(const char *template_src, json_t *messages, bool add_generation_prompt,
                const char *bos, const char *eos, json_t *tools, sb_t *out, cf_err *err) {
    return tmpl_render_at(template_src, messages, add_generation_prompt, bos, eos, tools, 0, out,
                          err);
}

/* ------------------------------------------------------------------ built-in templates */

#define ALTERNATE                                                                                  \
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"                               \
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}" \
    "{% endif %}"

static const struct {
    const char *name;
    const char *src;
} builtins[] = {
    {"chatml",
     "{% for message in messages %}"
     "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
     "{% endfor %}"
     "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"},
    {"llama2",
     "{% if messages[0]['role'] == 'system' %}"
     "{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}"
     "{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
     "{% for message in loop_messages %}" ALTERNATE
     "{% if loop.index0 == 0 and system_message != false %}"
     "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
     "{% else %}{% set content = message['content'] %}{% endif %}"
     "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
     "{% elif message['role'] == 'assistant' %}{{ ' ' + content.strip() + ' ' + eos_token }}{% "
     "endif %}"
     "{% endfor %}"},
    {"llama3",
     "{% for message in messages %}"
     "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + "
     "message['content'] | trim + '<|eot_id|>' %}"
     "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
     "{{ content }}{% endfor %}"
     "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% "
     "endif %}"},
    {"mistral",
     "{% if messages[0]['role'] == 'system' %}"
     "{% set system_prefix = messages[0]['content'] + '\\n\\n' %}{% set loop_messages = "
     "messages[1:] %}"
     "{% else %}{% set system_prefix = '' %}{% set loop_messages = messages %}{% endif %}"
     "{{ bos_token }}{% for message in loop_messages %}" ALTERNATE
     "{% if message['role'] == 'user' %}"
     "{{ '[INST] ' + (system_prefix if loop.first else '') + message['content'] + ' [/INST]' }}"
     "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}"
     "{% else %}{{ raise_exception('Only system, user and assistant roles are supported') }}{% "
     "endif %}"
     "{% endfor %}"},
    {"gemma",
     "{{ bos_token }}{% if messages[0]['role'] == 'system' %}"
     "{% set first_user_prefix = messages[0]['content'] + '\\n\\n' %}{% set loop_messages = "
     "messages[1:] %}"
     "{% else %}{% set first_user_prefix = '' %}{% set loop_messages = messages %}{% endif %}"
     "{% for message in loop_messages %}" ALTERNATE
     "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
     "{{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else '') + "
     "message['content'] | trim + '<end_of_turn>\\n' }}"
     "{% endfor %}"
     "{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}"},
    {"phi3",
     "{% for message in messages %}"
     "{% if message['role'] == 'system' %}{{ '<|system|>\\n' + message['content'] + '<|end|>\\n' }}"
     "{% elif message['role'] == 'user' %}{{ '<|user|>\\n' + message['content'] + '<|end|>\\n' }}"
     "{% elif message['role'] == 'assistant' %}{{ '<|assistant|>\\n' + message['content'] + "
     "'<|end|>\\n' }}"
     "{% endif %}{% endfor %}"
     "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% else %}{{ eos_token }}{% endif %}"},
};

static const char *const builtin_names[] = {"chatml", "llama2", "llama3", "mistral",
                                            "gemma",  "phi3",   NULL};

const char *tmpl_builtin(const char *name) {
    if (!name) return NULL;
    for (size_t i = 0; i < sizeof builtins / sizeof builtins[0]; i++)
        if (!strcmp(builtins[i].name, name)) return builtins[i].src;
    return NULL;
}

const char *const *tmpl_builtin_names(void) { return builtin_names; }

/* ---------------------------------------------------------- a model's template */

char *tmpl_for_model(const struct gguf_file *f, const struct tok_tokenizer *t,
                     const char **builtin) {
    gguf_str ts;
    if (builtin) *builtin = NULL;
    if (f && gguf_get_str(f, "tokenizer.chat_template", &ts) && ts.n) return gguf_str_dup(ts);
    const char *name;
    if (tok_find(t, "<|im_start|>", 12) >= 0)
        name = "chatml";
    else if (tok_find(t, "<|start_header_id|>", 19) >= 0)
        name = "llama3";
    else if (tok_find(t, "<start_of_turn>", 15) >= 0)
        name = "gemma";
    else if (tok_find(t, "<|user|>", 8) >= 0)
        name = "phi3";
    else
        name = tok_get_kind(t) == TOK_SPM ? "llama2" : "chatml";
    if (builtin) *builtin = name;
    return strdup(tmpl_builtin(name));
}
