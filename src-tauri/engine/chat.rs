//! Chat and completion requests on top of the supervisor: finds the model in the store, renders
//! its prompt (GGUF Jinja template, Ollama template layer, or the plain format), applies the
//! model's `params` defaults under the request's options, fits the conversation into the context
//! by dropping the oldest turns (never the system prompt nor the newest message), and starts the
//! generation on a runner.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::protocol::SamplingOptions;
use super::supervisor::{EngineError, Generation, LoadSpec, LoadedModel, ModelSize, RunnerGuard, Supervisor};
use super::template::{render_generate_with, ChatMessage, PromptExtras, PromptFormat, RenderedPrompt, TemplateSpec};
use super::attention::{self, FlashAttention, KvCacheType};
use super::context::{self, choose_parallel, DefaultContext, MIN_CONTEXT};
use super::tools::{self, ReplyParser, Think, ToolRequest};
use super::prompt::{fixed_prefix, guarded_parts, render_guarded, GuardError};
use super::speculative;
use super::vision;
use crate::gguf;
use crate::store::layers::{self, text_layer};
use crate::store::manifest::{self, Manifest};
use crate::store::{Store, StoreError};

/// Ollama's default context on a machine below 24 GiB; the engine's own default follows
/// memory (see [`super::context`]).
pub const DEFAULT_NUM_CTX: u32 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("model {model} cannot run here: {reason}")]
    NotRunnable { model: String, reason: String },
    #[error(transparent)]
    Template(#[from] super::template::TemplateError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The request asks for something the model's template cannot do (tools, thinking).
    #[error("{model} does not support {feature}")]
    Unsupported { model: String, feature: String },
    #[error("{0}")]
    BadTools(String),
    /// Text holding a control token's text that the template did not keep in one piece.
    #[error("a message holds the text of one of the model's control tokens (such as <start_of_turn> or <|im_start|>), and this model's template rearranges message text, so it cannot be kept from acting as one; remove that text from the message")]
    ControlText,
    #[error("the conversation does not fit in the context ({tokens} tokens for the newest message and system prompt, num_ctx {n_ctx}); raise num_ctx or shorten the message")]
    TooLong { tokens: u32, n_ctx: u32 },
}

impl From<GuardError> for ChatError {
    fn from(e: GuardError) -> Self {
        match e {
            GuardError::Template(t) => ChatError::Template(t),
            GuardError::ControlText => ChatError::ControlText,
        }
    }
}

/// A model ready to be prompted: where its weights are and what shapes its prompts.
#[derive(Clone, Debug)]
pub struct PreparedModel {
    pub name: String,
    pub model_path: PathBuf,
    pub gguf_template: Option<String>,
    pub ollama_template: Option<String>,
    /// The model's default system prompt (Ollama `system` layer).
    pub system: Option<String>,
    /// Turns from the Ollama `messages` layer (Modelfile `MESSAGE`), put before every conversation.
    pub messages: Vec<ChatMessage>,
    /// The LoRA adapter from the `adapter` layer (Modelfile `ADAPTER`), applied by the runner.
    pub adapter: Option<PathBuf>,
    /// The vision projector from the `projector` layer (an mmproj GGUF): the model reads images.
    pub projector: Option<PathBuf>,
    /// The draft model from the `draft` layer (Modelfile `DRAFT`), for speculative decoding.
    pub draft: Option<speculative::DraftModel>,
    /// Defaults from the Ollama `params` layer.
    pub params: SamplingOptions,
    pub params_num_ctx: Option<u32>,
    /// The context when neither a request nor the params name one: the engine's default for this
    /// machine once [`Engine::prepare`] has set it.
    pub default_num_ctx: u32,
    /// Flash attention and KV cache type from the `params` layer.
    pub attention: (Option<FlashAttention>, Option<KvCacheType>),
    pub n_ctx_train: Option<u32>,
    /// The KV cache's shape (f16 K and V), for sizing parallel slots.
    pub kv: attention::KvShape,
    pub weights_bytes: u64,
    /// Transformer blocks (layers a GPU could take); 0 when the GGUF does not say.
    pub block_count: u32,
    /// The GGUF names a pooling (`<arch>.pooling_type`): an embedding model, as Ollama decides it.
    pub pools: bool,
}

impl PreparedModel {
    pub fn from_store(store: &Store, name: &str) -> Result<Self, ChatError> {
        let entry = store.resolve(name)?;
        let display = entry.name.display_shortest();
        let m = &entry.manifest;
        let not_runnable = |reason: String| ChatError::NotRunnable { model: display.clone(), reason };
        let (model_path, info) = model_weights(store, m).map_err(not_runnable)?;
        let params_layer = text_layer(store, m, manifest::MEDIA_PARAMS);
        let (params, params_num_ctx) = params_layer.as_deref().map(parse_params).unwrap_or_default();
        Ok(PreparedModel {
            name: display,
            gguf_template: info.chat_template().map(str::to_string),
            ollama_template: text_layer(store, m, manifest::MEDIA_TEMPLATE),
            system: text_layer(store, m, manifest::MEDIA_SYSTEM),
            messages: text_layer(store, m, manifest::MEDIA_MESSAGES).map(|t| layers::parse_messages(&t).into_iter().map(|m| ChatMessage::new(m.role, m.content)).collect()).unwrap_or_default(),
            adapter: m.layer(manifest::MEDIA_ADAPTER).map(|l| store.blob_path(&l.digest)),
            projector: m.layer(manifest::MEDIA_PROJECTOR).map(|l| store.blob_path(&l.digest)),
            draft: speculative::from_manifest(store, m),
            params,
            params_num_ctx,
            default_num_ctx: DEFAULT_NUM_CTX,
            attention: params_layer.as_deref().map(attention::from_params).unwrap_or_default(),
            n_ctx_train: info.context_length().map(|c| c.min(u32::MAX as u64) as u32),
            kv: attention::KvShape::from_gguf(&info),
            // The projector loads beside the weights (on the same device).
            weights_bytes: info.file_len + m.layer(manifest::MEDIA_PROJECTOR).map_or(0, |l| l.size),
            block_count: info.block_count().unwrap_or(0).min(u32::MAX as u64) as u32,
            pools: info.architecture().is_some_and(|arch| info.get(&format!("{arch}.pooling_type")).is_some()),
            model_path,
        })
    }

    /// The prompt template users see (`/api/show`, the details view): Ollama's layer, else the
    /// GGUF's Jinja template.
    pub fn template(&self) -> Option<&str> {
        self.ollama_template.as_deref().or(self.gguf_template.as_deref())
    }

    /// The context the engine loads this model with: `requested`, else the model's `num_ctx`
    /// parameter, else `default_num_ctx`; at least 256 and at most the trained context.
    pub fn context_length(&self, requested: Option<u32>) -> u32 {
        let wanted = requested.or(self.params_num_ctx).unwrap_or(self.default_num_ctx).max(MIN_CONTEXT);
        self.n_ctx_train.map_or(wanted, |t| wanted.min(t.max(MIN_CONTEXT)))
    }

    /// What a runner of this model holds at `num_ctx` tokens per slot, with a `kv_cache` cache and
    /// `checkpoints` window checkpoints per slot (a draft's weights are the caller's to add).
    pub fn size(&self, num_ctx: u32, kv_cache: KvCacheType, checkpoints: u32) -> ModelSize {
        ModelSize {
            weights_bytes: self.weights_bytes,
            kv_bytes_per_token: kv_cache.bytes_of(self.kv.bytes_per_token(num_ctx)),
            checkpoint_bytes: kv_cache.bytes_of(self.kv.checkpoint_bytes(num_ctx)) * checkpoints as u64,
            layers: self.block_count,
        }
    }

    /// The template that renders this model's prompts, and its source (a Jinja template that
    /// fails falls back to the Go template at render time).
    pub fn primary_template(&self) -> (PromptFormat, Option<&str>) {
        fn non_empty(t: &Option<String>) -> Option<&str> {
            t.as_deref().filter(|t| !t.trim().is_empty())
        }
        match (non_empty(&self.gguf_template), non_empty(&self.ollama_template)) {
            (Some(j), _) => (PromptFormat::Jinja, Some(j)),
            (None, Some(g)) => (PromptFormat::GoTemplate, Some(g)),
            _ => (PromptFormat::Plain, None),
        }
    }

    fn template_source(&self, format: PromptFormat) -> Option<&str> {
        match format {
            PromptFormat::Jinja => self.gguf_template.as_deref(),
            PromptFormat::GoTemplate => self.ollama_template.as_deref(),
            PromptFormat::Plain => None,
        }
    }

    /// Ollama's capabilities: `embedding` for a model that pools, else `completion`, plus `tools`,
    /// `thinking` and `vision` when its template and layers have them.
    pub fn capabilities(&self) -> Vec<&'static str> {
        // Ollama's rule: a model whose GGUF names a pooling embeds; any other completes.
        if self.pools {
            return vec!["embedding"];
        }
        let (format, source) = self.primary_template();
        let mut caps = vec!["completion"];
        if tools::template_supports_tools(format, source) {
            caps.push("tools");
        }
        if tools::thinking_tags(format, source).is_some() {
            caps.push("thinking");
        }
        if self.projector.is_some() {
            caps.push("vision");
        }
        caps
    }

    /// Images for a model without a projector are an error, never silently dropped.
    fn check_images(&self, with_images: bool) -> Result<(), ChatError> {
        if with_images && self.projector.is_none() {
            return Err(ChatError::Unsupported { model: self.name.clone(), feature: "images: it has no vision projector (an Ollama `projector` layer, or an mmproj file imported with it); send text only or use a vision model".into() });
        }
        Ok(())
    }

    /// Asking a model without thinking support to think is an error (as in Ollama).
    fn check_think(&self, think: &Option<Think>, format: PromptFormat, source: Option<&str>) -> Result<(), ChatError> {
        if think.as_ref().is_some_and(Think::enabled) && tools::thinking_tags(format, source).is_none() {
            return Err(ChatError::Unsupported { model: self.name.clone(), feature: "thinking".into() });
        }
        Ok(())
    }

    /// The parser for a reply to `rendered`: thinking split off when the template thinks (and
    /// kept unless `think` is off), tool calls parsed when `tools` is given.
    fn reply_parser(&self, rendered: &RenderedPrompt, think: &Option<Think>, tools: Option<(tools::ToolSyntax, Vec<String>)>) -> ReplyParser {
        let thinking = tools::thinking_tags(rendered.format, self.template_source(rendered.format)).map(|tags| {
            let forced_open = tools::thinking_forced_open(&rendered.text, tags.0);
            (tags, forced_open, think.as_ref().is_none_or(Think::enabled))
        });
        ReplyParser::new(thinking, tools)
    }

    fn spec<'a>(&'a self, runner: &'a LoadedModel) -> TemplateSpec<'a> {
        TemplateSpec {
            gguf_chat_template: self.gguf_template.as_deref(),
            ollama_template: self.ollama_template.as_deref(),
            bos_token: Some(runner.info.bos_token.as_str()),
            eos_token: Some(runner.info.eos_token.as_str()),
        }
    }
}

/// The model layer's blob and GGUF header, or why the model cannot run here (in words a user can
/// act on).
pub fn model_weights(store: &Store, m: &Manifest) -> Result<(PathBuf, std::sync::Arc<gguf::GgufInfo>), String> {
    let Some(layer) = m.layer(manifest::MEDIA_MODEL) else {
        if m.layer(manifest::MEDIA_TENSOR).is_some() {
            return Err("stored as safetensors tensors for Ollama's MLX engine; Airlock runs GGUF models — import a GGUF build of this model".into());
        }
        return Err("the manifest has no model weights layer".into());
    };
    let path = store.blob_path(&layer.digest);
    if !path.is_file() {
        return Err(format!("its weights blob {} is missing; run `airlock verify` and import the model again", layer.digest));
    }
    let info = store.gguf_info(&layer.digest).map_err(|e| format!("its weights are not a valid GGUF file ({e}); import the model again"))?;
    Ok((path, info))
}

/// Reads an Ollama `params` layer (`{"stop": [...], "temperature": 0.7, "num_ctx": 8192, …}`).
pub fn parse_params(text: &str) -> (SamplingOptions, Option<u32>) {
    let Ok(map) = serde_json::from_str::<BTreeMap<String, serde_json::Value>>(text) else { return Default::default() };
    let num_ctx = map.get("num_ctx").and_then(|v| v.as_u64()).map(|n| n as u32);
    let stop = map.get("stop").cloned();
    // Field by field, so one odd value does not lose the others.
    let mut opts = SamplingOptions::default();
    for (key, value) in map {
        let one = serde_json::json!({ key: value });
        if let Ok(o) = serde_json::from_value::<SamplingOptions>(one) {
            opts = merge_options(&opts, &o);
        }
    }
    // `stop` may be one string or a list.
    opts.stop = match stop {
        Some(serde_json::Value::String(s)) => vec![s],
        Some(serde_json::Value::Array(a)) => a.into_iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
        _ => Vec::new(),
    };
    (opts, num_ctx)
}

/// Request options over model defaults: each field the request sets wins; stops add up.
pub fn merge_options(defaults: &SamplingOptions, request: &SamplingOptions) -> SamplingOptions {
    let mut out = request.clone();
    macro_rules! default_to {
        ($($f:ident),*) => { $( if out.$f.is_none() { out.$f = defaults.$f; } )* };
    }
    default_to!(temperature, top_k, top_p, min_p, repeat_penalty, repeat_last_n, presence_penalty, frequency_penalty, seed, num_predict, draft_max);
    if out.stop.is_empty() {
        out.stop = defaults.stop.clone();
    }
    out
}

/// Ollama's `num_gpu` as layers on GPUs: a negative value (Ollama's -1) means as many as fit.
pub fn gpu_layers(num_gpu: i64) -> Option<u32> {
    u32::try_from(num_gpu).ok().map(|n| n.min(100_000))
}

/// Per-request settings beyond sampling.
#[derive(Clone, Debug, Default)]
pub struct RequestSettings {
    pub options: SamplingOptions,
    pub num_ctx: Option<u32>,
    /// Layers on GPUs (Ollama's `num_gpu`); `None`: as many as fit.
    pub num_gpu: Option<u32>,
    pub flash_attention: Option<FlashAttention>,
    /// A draft model by name for speculative decoding; `""` turns the model's own off.
    pub draft: Option<String>,
    pub keep_alive: Option<Duration>,
    /// GBNF grammar for constrained output.
    pub grammar: Option<String>,
    /// Base64 images for `/api/generate`'s prompt (chat messages carry their own).
    pub images: Vec<String>,
    /// Tools the model may call, and how (`engine::tools`).
    pub tools: ToolRequest,
    /// `think`; `None`: the template's default.
    pub think: Option<Think>,
}

/// A generation plus what was done to the request to run it.
pub struct ChatStream {
    pub generation: Generation,
    pub format: PromptFormat,
    /// The prompt exactly as the model sees it (`run --verbose` prints it).
    pub prompt: String,
    /// Oldest messages dropped so the conversation fits the context.
    pub dropped_messages: usize,
    /// The context length the model runs with, and how much of it the prompt may fill before the
    /// oldest messages are dropped (the rest is kept for the reply): the desktop's context bar.
    pub num_ctx: u32,
    pub prompt_budget: u32,
    pub load_duration: Duration,
    /// Where the model runs ([`LoadedModel::runs_on`]).
    pub runs_on: String,
    /// Splits the streamed text into content, thinking and tool calls; feed it every piece.
    pub parser: ReplyParser,
}

pub struct Engine {
    pub supervisor: Arc<Supervisor>,
    /// Where a request's `draft` model is looked up.
    store: Store,
    /// Decided once, on first use (see [`Engine::default_context`]).
    default_context: std::sync::OnceLock<DefaultContext>,
}

impl Engine {
    /// This engine's default context, decided on first use: the variable, else Ollama's rule
    /// over the memory a device probe finds (one probe per process, as Ollama decides once).
    pub fn default_context(&self) -> &DefaultContext {
        self.default_context.get_or_init(|| {
            let cfg = self.supervisor.config();
            match cfg.context_length {
                Some((tokens, var)) => DefaultContext { tokens, why: format!("set by {var}") },
                None => context::default_for(&crate::hardware::probe_with(&cfg.runner_exe, &cfg.rpc), None),
            }
        })
    }

    /// `model` as prepared by [`PreparedModel::from_store`], with this engine's default context.
    pub fn with_default_context(&self, mut model: PreparedModel) -> PreparedModel {
        model.default_num_ctx = self.default_context().tokens;
        model
    }
}

/// Tokens of the context kept free for the reply when the conversation is fitted.
fn reply_room(n_ctx: u32, options: &SamplingOptions) -> u32 {
    options.num_predict.filter(|n| *n > 0).map_or(n_ctx / 8, |n| n as u32).min(n_ctx / 2)
}

impl Engine {
    pub fn new(supervisor: Arc<Supervisor>, store: Store) -> Self {
        Engine { supervisor, store, default_context: Default::default() }
    }

    /// The runner for `model`, held for this request until its reply ends.
    fn load(&self, model: &PreparedModel, req: &RequestSettings) -> Result<(RunnerGuard, Duration), ChatError> {
        let num_ctx = model.context_length(req.num_ctx);
        let started = std::time::Instant::now();
        let not_runnable = |reason: String| ChatError::NotRunnable { model: model.name.clone(), reason };
        let (flash_attention, kv_cache) = attention::resolve(req.flash_attention, model.attention, self.supervisor.config().attention()).map_err(not_runnable)?;
        let draft = speculative::choose(&self.store, &model.model_path, model.draft.as_ref(), req.draft.as_deref()).map_err(not_runnable)?;
        let mut size = model.size(num_ctx, kv_cache, self.supervisor.config().checkpoints);
        // The draft's cache is left out: a small model's, beside the model's.
        size.weights_bytes += draft.as_ref().map_or(0, |d| d.bytes);
        let spec = LoadSpec {
            name: model.name.clone(),
            model_path: model.model_path.clone(),
            num_ctx,
            // Only used when the runner has to start.
            parallel: choose_parallel(size.weights_bytes, size.slot_bytes(num_ctx)),
            num_gpu: req.num_gpu,
            adapter: model.adapter.clone(),
            projector: model.projector.clone(),
            size,
            embedding: false,
            flash_attention,
            kv_cache,
            draft: draft.map(|d| d.path),
        };
        let runner = self.supervisor.load(&spec, req.keep_alive)?;
        Ok((runner, started.elapsed()))
    }

    /// Loads the model without generating (Ollama's empty request preloads); the request's
    /// keep-alive applies from now.
    pub fn preload(&self, model: &PreparedModel, req: &RequestSettings) -> Result<Duration, ChatError> {
        Ok(self.load(model, req)?.1)
    }

    /// Starts a chat reply to `messages`.
    pub fn chat(&self, model: &PreparedModel, messages: &[ChatMessage], req: RequestSettings) -> Result<ChatStream, ChatError> {
        // What the model cannot do is refused before it loads.
        let (format, source) = model.primary_template();
        model.check_think(&req.think, format, source)?;
        let tools_on = req.tools.active();
        if tools_on && !tools::template_supports_tools(format, source) {
            return Err(ChatError::Unsupported { model: model.name.clone(), feature: "tools".into() });
        }
        model.check_images(vision::has_images(messages))?;
        let (runner, load_duration) = self.load(model, &req)?;
        let mut messages = [model.messages.as_slice(), messages].concat();
        if let Some(system) = &model.system {
            if !messages.iter().any(|m| m.role == "system") {
                messages.insert(0, ChatMessage::new("system", system.clone()));
            }
        }
        // Each image becomes a marker in its message's text; the images travel beside the
        // prompt, less those of messages dropped to fit the context.
        vision::place_images(&mut messages);
        let image_log: Vec<ChatMessage> = messages.iter_mut().map(|m| ChatMessage { role: m.role.clone(), images: std::mem::take(&mut m.images), ..Default::default() }).collect();
        let options = merge_options(&model.params, &req.options);
        let extras = PromptExtras { tools: tools_on.then_some(req.tools.tools.as_slice()), think: req.think.as_ref() };
        // The system prompt and the model's turns: the prompt cache keeps their state.
        let fixed = messages.iter().take_while(|m| m.role == "system" || model.messages.contains(m)).count();
        let fixed = self.supervisor.config().prompt_cache.as_ref().and_then(|_| fixed_prefix(&model.spec(&runner), &messages, fixed, extras, &runner.info.special_tokens));
        let (rendered, plain, dropped) = self.fit(model, &runner, messages, &options, extras)?;
        let fixed = fixed.filter(|f| rendered.text.starts_with(f.as_str())).map(|f| f.len());
        let mut req = req;
        req.images = vision::images_kept(&image_log, dropped);
        let syntax = tools::ToolSyntax::for_template(rendered.format, model.template_source(rendered.format));
        let only = match &req.tools.choice {
            tools::ToolChoice::Required => Some(None),
            tools::ToolChoice::Function(name) => Some(Some(name.clone())),
            _ => None,
        };
        let forced = tools_on && only.is_some();
        if let (true, Some(only)) = (tools_on, only) {
            req.grammar = Some(tools::tool_grammar(&syntax, &req.tools, only.as_deref()).map_err(ChatError::BadTools)?);
        }
        let parser = model.reply_parser(&rendered, &req.think, tools_on.then(|| (syntax, req.tools.names())));
        let parser = if forced { parser.calls_only() } else { parser.untagged_calls(req.tools.schemas()) };
        self.start(runner, (rendered, plain, fixed), options, req, dropped, load_duration, parser)
    }

    /// The prompt tokens a chat of `messages` (with `req`'s tools shown) would start with, as
    /// rendered for `model`, without generating (Anthropic's `count_tokens`). Images count as the
    /// marker text that stands for them.
    pub fn count_chat_tokens(&self, model: &PreparedModel, messages: &[ChatMessage], req: &RequestSettings) -> Result<u32, ChatError> {
        let (runner, _) = self.load(model, req)?;
        let mut messages = [model.messages.as_slice(), messages].concat();
        if let (Some(system), false) = (&model.system, messages.iter().any(|m| m.role == "system")) {
            messages.insert(0, ChatMessage::new("system", system.clone()));
        }
        vision::place_images(&mut messages);
        let extras = PromptExtras { tools: req.tools.active().then_some(req.tools.tools.as_slice()), think: req.think.as_ref() };
        let (rendered, plain) = render_guarded(&model.spec(&runner), &messages, extras, &runner.info.special_tokens)?;
        Ok(self.supervisor.count_prompt_tokens(&runner, &rendered.text, plain)?)
    }

    /// Starts a completion of `prompt` (Ollama `/api/generate`): through the template unless `raw`.
    pub fn generate(&self, model: &PreparedModel, prompt: &str, system: Option<&str>, raw: bool, req: RequestSettings) -> Result<ChatStream, ChatError> {
        let (format, source) = model.primary_template();
        if !raw {
            model.check_think(&req.think, format, source)?;
        }
        model.check_images(!req.images.is_empty())?;
        // The images go before the prompt's text (or at its `[img]` placeholders), as in a chat.
        let mut with_images = ChatMessage { images: req.images.clone(), ..ChatMessage::new("user", prompt) };
        vision::place_images(std::slice::from_mut(&mut with_images));
        let prompt = with_images.content.as_str();
        let (runner, load_duration) = self.load(model, &req)?;
        let spec = model.spec(&runner);
        let extras = PromptExtras { tools: None, think: req.think.as_ref() };
        let system = system.or(model.system.as_deref());
        let (rendered, plain) = if raw {
            // A raw prompt is the caller's own template: its special tokens are meant.
            (RenderedPrompt { text: prompt.to_string(), format: PromptFormat::Plain, stop: Vec::new() }, Vec::new())
        } else if !model.messages.is_empty() {
            // Like Ollama: the model's MESSAGE turns go between the system text and the prompt.
            let mut turns: Vec<ChatMessage> = system.filter(|s| !s.is_empty()).map(|s| ChatMessage::new("system", s)).into_iter().collect();
            turns.extend(model.messages.iter().cloned());
            turns.push(ChatMessage::new("user", prompt));
            render_guarded(&spec, &turns, extras, &runner.info.special_tokens)?
        } else {
            let specials = &runner.info.special_tokens;
            if specials.found_in(prompt) || system.is_some_and(|s| specials.found_in(s)) {
                guarded_parts(render_generate_with(&spec, system.map(|s| specials.guard(s)).as_deref(), &specials.guard(prompt), extras)?)?
            } else {
                (render_generate_with(&spec, system, prompt, extras)?, Vec::new())
            }
        };
        let options = merge_options(&model.params, &req.options);
        let parser = if raw { ReplyParser::plain() } else { model.reply_parser(&rendered, &req.think, None) };
        self.start(runner, (rendered, plain, None), options, req, 0, load_duration, parser)
    }

    #[allow(clippy::too_many_arguments)]
    fn start(&self, runner: RunnerGuard, (rendered, plain, fixed): (RenderedPrompt, Vec<(usize, usize)>, Option<usize>), mut options: SamplingOptions, req: RequestSettings, dropped: usize, load_duration: Duration, parser: ReplyParser) -> Result<ChatStream, ChatError> {
        for s in rendered.stop {
            if !options.stop.contains(&s) {
                options.stop.push(s);
            }
        }
        let runs_on = runner.runs_on();
        let num_ctx = runner.info.n_ctx;
        let prompt_budget = num_ctx.saturating_sub(reply_room(num_ctx, &options));
        let prompt = rendered.text.clone();
        let generation = self.supervisor.generate_with_images(runner, rendered.text, plain, fixed, options, req.grammar, req.images)?;
        Ok(ChatStream { generation, format: rendered.format, prompt, dropped_messages: dropped, load_duration, runs_on, num_ctx, prompt_budget, parser })
    }

    /// Renders the conversation, dropping the oldest turns until it fits with room for a reply.
    /// Returns the prompt, its plain ranges (see [`super::untrusted`]) and how many turns were dropped.
    fn fit(&self, model: &PreparedModel, runner: &LoadedModel, mut messages: Vec<ChatMessage>, options: &SamplingOptions, extras: PromptExtras) -> Result<(RenderedPrompt, Vec<(usize, usize)>, usize), ChatError> {
        let n_ctx = runner.info.n_ctx;
        let budget = n_ctx.saturating_sub(reply_room(n_ctx, options));
        let mut dropped = 0;
        loop {
            let (rendered, plain) = render_guarded(&model.spec(runner), &messages, extras, &runner.info.special_tokens)?;
            // A token is at least one byte, so a short prompt fits without asking the runner.
            if rendered.text.len() as u32 <= budget {
                return Ok((rendered, plain, dropped));
            }
            let tokens = self.supervisor.count_prompt_tokens(runner, &rendered.text, plain.clone())?;
            if tokens <= budget {
                return Ok((rendered, plain, dropped));
            }
            let first_droppable = messages.iter().position(|m| m.role != "system");
            match first_droppable {
                Some(i) if i + 1 < messages.len() => {
                    messages.remove(i);
                    dropped += 1;
                }
                _ => return Err(ChatError::TooLong { tokens, n_ctx }),
            }
        }
    }
}

/// A GBNF grammar for any JSON value (llama.cpp's `grammars/json.gbnf`), for `format: "json"`.
pub const JSON_GRAMMAR: &str = r#"root   ::= object
value  ::= object | array | string | number | ("true" | "false" | "null") ws
object ::= "{" ws ( string ":" ws value ("," ws string ":" ws value)* )? "}" ws
array  ::= "[" ws ( value ("," ws value)* )? "]" ws
string ::= "\"" ( [^"\\\x7F\x00-\x1F] | "\\" (["\\bfnrt] | "u" [0-9a-fA-F]{4}) )* "\"" ws
number ::= ("-"? ([0-9] | [1-9] [0-9]{0,15})) ("." [0-9]+)? ([eE] [-+]? [0-9] [1-9]{0,15})? ws
ws ::= | " " | "\n" [ \t]{0,20}
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reply_keeps_an_eighth_of_the_context_or_its_max_tokens_up_to_half() {
        let with = |n: Option<i32>| SamplingOptions { num_predict: n, ..Default::default() };
        assert_eq!((reply_room(2048, &with(None)), reply_room(2048, &with(Some(-1))), reply_room(2048, &with(Some(100))), reply_room(2048, &with(Some(5000)))), (256, 256, 100, 1024));
    }

    #[test]
    fn params_layer_defaults_yield_to_request_options() {
        let (defaults, num_ctx) = parse_params(r#"{"stop":["<|im_end|>"],"temperature":0.7,"num_ctx":8192,"unknown":1}"#);
        assert_eq!((defaults.temperature, num_ctx, defaults.stop.as_slice()), (Some(0.7), Some(8192), &["<|im_end|>".to_string()][..]));
        let req = SamplingOptions { temperature: Some(0.0), top_k: Some(5), ..Default::default() };
        let merged = merge_options(&defaults, &req);
        assert_eq!((merged.temperature, merged.top_k, merged.stop.len()), (Some(0.0), Some(5), 1));
    }

    #[test]
    fn single_stop_string_in_params_is_accepted() {
        assert_eq!(parse_params(r#"{"stop":"</s>"}"#).0.stop, vec!["</s>".to_string()]);
    }
}
