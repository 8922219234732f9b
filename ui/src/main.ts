import { mount } from 'svelte';
import './app.css';
import App from './App.svelte';
import { applyTheme } from './lib/state/app.svelte';

// Until the settings arrive, follow the OS theme (avoids a flash of the wrong colours).
applyTheme('system');

const app = mount(App, { target: document.getElementById('app')! });

export default app;
