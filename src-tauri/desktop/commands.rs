//! The commands the web view may call (ui/src/lib/api.ts is their other half): this file only
//! registers them, each from the file of its concern, so the list here, build.rs's
//! `APP_COMMANDS` and capabilities/default.json name the same commands. Each command checks its
//! arguments, then calls the same modules as the CLI; long work runs off the main thread and
//! reports through a Channel. Nothing else lives here: no file may use this one.

use tauri::ipc::Invoke;

pub fn handler() -> impl Fn(Invoke) -> bool + Send + Sync + 'static {
    tauri::generate_handler![
        super::models::list_models,
        super::models::model_details,
        super::models::delete_model,
        super::models::open_store_folder,
        super::transfer::pick_path,
        super::transfer::import_path,
        super::transfer::cancel_transfer,
        super::transfer::export_models,
        super::dropped::subscribe_drops,
        super::model_state::hardware,
        super::chat::start_chat,
        super::chat::stop_chat,
        super::chat::parameter_limits,
        super::conversations::list_conversations,
        super::conversations::save_conversation,
        super::conversations::delete_conversation,
        super::settings_page::get_settings,
        super::settings_page::set_api_server,
        super::settings_page::set_signature_policy,
        super::settings_page::set_theme,
        super::settings_page::set_ui_state,
        super::settings_page::trust_add,
        super::settings_page::trust_remove,
        super::duplicate::modelfile_parts,
        super::duplicate::preview_duplicate,
        super::duplicate::duplicate_model,
        super::registry_pull::pull_from_registry,
        super::registry_pull::set_registry,
        super::documents::documents_of,
        super::documents::pick_documents,
        super::documents::attach_documents,
        super::documents::detach_document,
        super::documents::add_library,
        super::documents::remove_library,
        super::documents::use_libraries,
        super::documents::sync_documents,
        super::documents::cancel_indexing,
        super::documents::embedding_settings,
        super::documents::set_embedding_model,
        super::documents::retrieve_documents,
        super::model_state::loaded_models,
        super::model_state::unload_model,
        super::model_state::model_capabilities,
        super::conversation_file::export_conversation,
        super::conversation_file::import_conversation,
        super::dropped::subscribe_drag,
        super::images::read_image,
    ]
}
