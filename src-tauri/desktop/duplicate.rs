//! "Duplicate with changes…" on the Models page: a model's system prompt, template, parameters
//! and draft model (speculative decoding) edited in a form, previewed as a Modelfile and written by the same code as `airlock create`.

use serde::{Deserialize, Serialize};
use tauri::State;

use super::access::blocking;
use super::error::{CommandError, CommandResult};
use super::AppState;
use crate::modelfile::params::Applied;
use crate::modelfile::{self, CreateError, Created, ModelLayers, Recipe, Source};

/// What the form starts from: the model's own layers.
#[derive(Debug, Serialize)]
pub struct ModelfileParts {
    pub system: String,
    /// The Ollama template layer (a GGUF's Jinja template is not editable here).
    pub template: String,
    /// One `name value` line per parameter, as `PARAMETER` lines write them.
    pub parameters: String,
    /// The model in the store whose weights are this model's draft (`DRAFT`), if any.
    pub draft: String,
}

#[derive(Debug, Deserialize)]
pub struct DuplicateForm {
    pub source: String,
    pub name: String,
    pub system: String,
    pub template: String,
    pub parameters: String,
    /// A model in the store to draft for the new one (speculative decoding); empty keeps the
    /// source's.
    #[serde(default)]
    pub draft: String,
}

fn create_error(e: CreateError) -> CommandError {
    let code = if matches!(e, CreateError::Invalid(_)) { "invalid_argument" } else { "store" };
    CommandError::new(code, e.to_string())
}

/// The form as a recipe on top of the source model; each parameter line is checked.
fn recipe(form: &DuplicateForm) -> CommandResult<Recipe> {
    let mut r = Recipe { from: Some(Source::Model(form.source.clone())), ..Default::default() };
    if !form.system.trim().is_empty() {
        r.system = Some(form.system.clone());
    }
    if !form.template.trim().is_empty() {
        modelfile::create::check_template(&form.template).map_err(CommandError::invalid)?;
        r.template = Some(form.template.clone());
    }
    if !form.draft.trim().is_empty() {
        r.draft = Some(Source::Model(form.draft.trim().to_string()));
    }
    for (i, line) in form.parameters.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, value) = line.split_once(char::is_whitespace).ok_or_else(|| CommandError::invalid(format!("parameters, line {}: write a name and a value, e.g. temperature 0.7", i + 1)))?;
        match r.parameters.set_text(name, value.trim()) {
            Ok(Applied::Set) => {}
            Ok(Applied::Ignored(w)) => r.warnings.push(w),
            Err(e) => return Err(CommandError::invalid(format!("parameters, line {}: {e}", i + 1))),
        }
    }
    Ok(r)
}

#[tauri::command]
pub async fn modelfile_parts(state: State<'_, AppState>, name: String) -> CommandResult<ModelfileParts> {
    let core = state.core.clone();
    blocking(move || {
        let entry = core.store.resolve(&name)?;
        let layers = ModelLayers::read(&core.store, &entry);
        let parameters = layers.parameters.lines().into_iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join("\n");
        // The draft layer holds weights: name the model that has them.
        let draft = entry.manifest.layer(crate::store::manifest::MEDIA_DRAFT).and_then(|d| {
            let (models, _) = core.store.list().ok()?;
            models.into_iter().find(|m| m.manifest.layer(crate::store::manifest::MEDIA_MODEL).is_some_and(|l| l.digest == d.digest)).map(|m| m.name.display_shortest())
        });
        Ok(ModelfileParts { system: layers.system.unwrap_or_default(), template: layers.template.unwrap_or_default(), parameters, draft: draft.unwrap_or_default() })
    })
    .await
}

/// The Modelfile the form amounts to (`FROM` the source model), or what is wrong with it.
#[tauri::command]
pub fn preview_duplicate(form: DuplicateForm) -> CommandResult<String> {
    let r = recipe(&form)?;
    let layers = ModelLayers { name: form.source.clone(), template: r.template, system: r.system, parameters: r.parameters, ..Default::default() };
    let draft = if form.draft.trim().is_empty() { String::new() } else { format!("DRAFT {}\n", form.draft.trim()) };
    Ok(layers.instructions() + &draft)
}

#[tauri::command]
pub async fn duplicate_model(state: State<'_, AppState>, form: DuplicateForm) -> CommandResult<Created> {
    if form.name.trim().is_empty() {
        return Err(CommandError::invalid("give the new model a name"));
    }
    let r = recipe(&form)?;
    let core = state.core.clone();
    blocking(move || modelfile::create(&core.store, form.name.trim(), &r, &mut |_| {}).map_err(create_error)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_becomes_a_checked_recipe_and_a_preview() {
        let form = |parameters: &str, template: &str| DuplicateForm { source: "gemma3:270m".into(), name: "x".into(), system: "Be brief.".into(), template: template.into(), parameters: parameters.into(), draft: String::new() };
        let preview = preview_duplicate(form("temperature 0.2\nstop two words\n", "")).unwrap();
        assert_eq!(preview, "FROM gemma3:270m\nSYSTEM Be brief.\nPARAMETER stop two words\nPARAMETER temperature 0.2\n");
        let drafted = DuplicateForm { draft: "gemma3:270m".into(), ..form("", "") };
        assert_eq!(preview_duplicate(drafted).unwrap(), "FROM gemma3:270m\nSYSTEM Be brief.\nDRAFT gemma3:270m\n");
        assert!(preview_duplicate(form("temprature 1", "")).unwrap_err().message.contains("line 1: unknown parameter"));
        assert!(preview_duplicate(form("", "{{ if .System }}")).unwrap_err().message.contains("TEMPLATE does not parse"));
    }
}
