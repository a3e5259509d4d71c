-- infill-ls for Neovim: starts `infill-ls serve` with vim.lsp.start for the configured
-- filetypes and shows its inline completions as ghost text.
--   Neovim 0.12+: the built-in vim.lsp.inline_completion.
--   Neovim 0.10/0.11: infill.ghost (own requests and extmarks).
-- See :help infill.
local compat = require("infill.compat")
local ghost = require("infill.ghost")
local prefetch = require("infill.prefetch")

local M = {}

local defaults = {
  -- Command that starts the server; nil: `infill-ls serve` from PATH or a .venv above the file.
  cmd = nil,
  filetypes = {
    "python", "lua", "javascript", "typescript", "javascriptreact", "typescriptreact", "c", "cpp",
    "rust", "go", "java", "sh", "ruby", "php", "cs", "kotlin", "scala", "swift", "zig", "html", "css",
  },
  root_markers = { ".git", "pyproject.toml", "package.json", "Cargo.toml", "go.mod", "Makefile" },
  -- Server options, sent as initializationOptions (and on :InfillSet): model, device, dtype,
  -- maxNewTokensSingleLine, maxNewTokensMultiLine, temperature, ... Empty: the server's defaults.
  server = {},
  -- "auto": built-in vim.lsp.inline_completion on 0.12+, own ghost text before.
  -- "plugin": always the plugin's ghost text (0.10+).
  implementation = "auto",
  debounce_ms = 150,
  keymaps = {
    accept = "<Tab>",
    accept_word = "<M-Right>",
    next = "<M-]>",
    prev = "<M-[>",
    dismiss = "<C-]>",
  },
  enabled = true,
  -- Tell the server where the cursor comes to rest (after a motion or a buffer switch, not after
  -- typing), so it prepares that place before you type there. See infill.prefetch.
  prefetch = true,
}

M.config = vim.deepcopy(defaults)

--- The server options as a JSON object: an empty Lua table would be sent as `[]`.
local function server_options()
  return next(M.config.server) == nil and vim.empty_dict() or M.config.server
end

local function use_builtin()
  return M.config.implementation ~= "plugin" and compat.has_builtin_inline
end

--- `infill-ls serve`, found on PATH or in a .venv/venv above the buffer's file.
local function default_cmd(bufnr)
  local exe = vim.fn.exepath("infill-ls")
  if exe == "" then
    local file = vim.api.nvim_buf_get_name(bufnr)
    local start = file ~= "" and vim.fs.dirname(file) or vim.fn.getcwd()
    local found = vim.fs.find({ ".venv/bin/infill-ls", "venv/bin/infill-ls" }, { path = start, upward = true })
    exe = found[1]
  end
  if not exe then
    return nil
  end
  return { exe, "serve" }
end

-- "i": in front of what is still waiting to be typed, so a key that falls through keeps its place
-- (appended, Tab then x typed quickly came out as x then Tab).
local function feed(keys)
  vim.api.nvim_feedkeys(vim.api.nvim_replace_termcodes(keys, true, false, true), "ni", false)
end

local function map_keys(bufnr)
  local keys = M.config.keymaps
  local function imap(lhs, fn, desc)
    if lhs and lhs ~= "" then
      vim.keymap.set("i", lhs, function()
        if not fn() then
          feed(lhs) -- nothing to act on: the key does what it normally does
        end
      end, { buffer = bufnr, desc = desc })
    end
  end
  if use_builtin() then
    local ic = vim.lsp.inline_completion
    imap(keys.accept, function() return ic.get({ bufnr = bufnr }) end, "infill: accept suggestion")
    imap(keys.next, function() ic.select({ bufnr = bufnr, count = 1 }) return true end, "infill: next suggestion")
    imap(keys.prev, function() ic.select({ bufnr = bufnr, count = -1 }) return true end, "infill: previous suggestion")
    return
  end
  imap(keys.accept, function() return ghost.accept(bufnr) end, "infill: accept suggestion")
  imap(keys.accept_word, function() return ghost.accept_word(bufnr) end, "infill: accept next word")
  imap(keys.next, function() ghost.cycle(bufnr, 1) return true end, "infill: next suggestion")
  imap(keys.prev, function() ghost.cycle(bufnr, -1) return true end, "infill: previous suggestion")
  imap(keys.dismiss, function()
    local shown = ghost.is_visible(bufnr)
    ghost.clear(bufnr)
    return shown
  end, "infill: dismiss suggestion")
end

local function clients()
  return compat.get_clients({ name = ghost.config.client_name })
end

-- The model as the server reports it (`infill.stats`): nil before the first answer, "loading",
-- "ready" or "failed". The server loads the model in the background and answers with nothing
-- meanwhile, so the user is told once, and asked for again when it is ready.
M.model = { status = nil, error = nil }
local watching = {}
local MODEL_POLL_MS = 300

--- When the model becomes ready, a buffer still in insert mode gets a suggestion at the cursor
--- without waiting for the next key (the built-in 0.12 client asks again on its own next event).
local function ask_again()
  local bufnr = vim.api.nvim_get_current_buf()
  local mode = vim.api.nvim_get_mode().mode
  if use_builtin() or not M.config.enabled or mode:sub(1, 1) ~= "i" then
    return
  end
  for _, client in ipairs(clients()) do
    if client.attached_buffers and client.attached_buffers[bufnr] then
      ghost.request(bufnr, 2)
      return
    end
  end
end

--- Poll the server's model status until it is ready or failed.
function M.watch_model(client)
  if watching[client.id] then
    return
  end
  watching[client.id] = true
  local function poll()
    if not vim.tbl_contains(vim.tbl_map(function(c) return c.id end, clients()), client.id) then
      watching[client.id] = nil
      return
    end
    compat.request(client, "workspace/executeCommand", { command = "infill.stats" }, function(err, res)
      local model = (not err and type(res) == "table" and res.model) or {}
      if model.status == "loading" or model.status == "unloaded" then
        if M.model.status ~= "loading" then
          vim.notify_once("infill: loading the model; suggestions appear when it is ready", vim.log.levels.INFO)
        end
        M.model.status = "loading"
        vim.defer_fn(poll, MODEL_POLL_MS)
        return
      end
      watching[client.id] = nil
      local was = M.model.status
      M.model.status, M.model.error = model.status or "ready", model.error
      if was == "loading" and M.model.status == "ready" then
        ask_again()
      end
    end, next(client.attached_buffers or {}))
  end
  poll()
end

local function on_attach(client, bufnr)
  M.watch_model(client)
  if use_builtin() then
    vim.lsp.inline_completion.enable(M.config.enabled, { bufnr = bufnr })
  elseif M.config.enabled then
    ghost.attach(bufnr)
  end
  prefetch.attach(bufnr)
  map_keys(bufnr)
end

--- Start (or reuse) the server for a buffer; returns the client id or nil.
function M.start(bufnr)
  bufnr = bufnr or vim.api.nvim_get_current_buf()
  local cmd = M.config.cmd or default_cmd(bufnr)
  if not cmd then
    vim.notify_once("infill: infill-ls not found on PATH or in a .venv; set cmd in require('infill').setup()",
      vim.log.levels.ERROR)
    return nil
  end
  local file = vim.api.nvim_buf_get_name(bufnr)
  local root = vim.fs.root and vim.fs.root(bufnr, M.config.root_markers)
  if not root then
    root = file ~= "" and vim.fs.dirname(file) or vim.fn.getcwd()
  end
  return vim.lsp.start({
    name = ghost.config.client_name,
    cmd = cmd,
    root_dir = root,
    init_options = server_options(),
    settings = { infill = server_options() },
    on_attach = on_attach,
  }, { bufnr = bufnr })
end

--- Turn suggestions on or off in every attached buffer (the server keeps running).
function M.toggle(enable)
  if enable == nil then
    enable = not M.config.enabled
  end
  M.config.enabled = enable
  for _, client in ipairs(clients()) do
    for bufnr in pairs(client.attached_buffers or {}) do
      if use_builtin() then
        vim.lsp.inline_completion.enable(enable, { bufnr = bufnr })
      elseif enable then
        ghost.attach(bufnr)
      else
        ghost.detach(bufnr)
      end
    end
  end
  vim.notify("infill: suggestions " .. (enable and "on" or "off"))
end

--- Change a server option at run time (sent as workspace/didChangeConfiguration).
function M.set_option(name, value)
  M.config.server[name] = value
  for _, client in ipairs(clients()) do
    compat.notify(client, "workspace/didChangeConfiguration", { settings = { infill = server_options() } })
    M.watch_model(client) -- a new model loads in the background
  end
end

function M.restart()
  local buffers = {}
  for _, client in ipairs(clients()) do
    for bufnr in pairs(client.attached_buffers or {}) do
      table.insert(buffers, bufnr)
      ghost.detach(bufnr)
      prefetch.detach(bufnr)
    end
    compat.stop(client, true)
  end
  vim.defer_fn(function()
    for _, bufnr in ipairs(buffers) do
      if vim.api.nvim_buf_is_valid(bufnr) then
        M.start(bufnr)
      end
    end
  end, 500)
end

--- One line for a statusline: "infill 123 ms", "infill loading", "infill off", "infill error".
function M.status()
  if not M.config.enabled then
    return "infill off"
  end
  if M.model.status == "loading" then
    return "infill loading"
  end
  if ghost.stats.last_error or M.model.status == "failed" then
    return "infill error"
  end
  if ghost.stats.last_latency_ms then
    return string.format("infill %d ms", ghost.stats.last_latency_ms)
  end
  return #clients() > 0 and "infill" or ""
end

--- Client counters, and the server's model status and latency when it answers in time.
function M.stats_text()
  local st = ghost.stats
  local lines = { string.format("infill: requests %d, shown %d, accepted %d, errors %d, last latency %s",
    st.requests, st.shown, st.accepted, st.errors,
    st.last_latency_ms and string.format("%d ms", st.last_latency_ms) or "-") }
  for _, client in ipairs(clients()) do
    local bufnr = next(client.attached_buffers or {})
    local ok, res = pcall(function()
      if vim.fn.has("nvim-0.11") == 1 then
        return client:request_sync("workspace/executeCommand", { command = "infill.stats" }, 2000, bufnr)
      end
      return client.request_sync("workspace/executeCommand", { command = "infill.stats" }, 2000, bufnr)
    end)
    local s = ok and res and res.result
    if s then
      local model = s.model or {}
      table.insert(lines, string.format("server: model %s (%s)%s, suggestions shown %s, accepted %s, p50 %s ms",
        tostring(model.source), tostring(model.status), model.error and (": " .. model.error) or "",
        tostring(s.suggestionsShown), tostring(s.accepted), tostring(s.latencyMs and s.latencyMs.p50 or "-")))
    end
  end
  return table.concat(lines, "\n")
end

local function parse_value(text)
  if text == "true" or text == "false" then
    return text == "true"
  end
  return tonumber(text) or text
end

function M.setup(opts)
  M.config = vim.tbl_deep_extend("force", vim.deepcopy(defaults), opts or {})
  ghost.config.debounce_ms = M.config.debounce_ms
  prefetch.config.client_name = ghost.config.client_name
  prefetch.config.active = function() return M.config.enabled and M.config.prefetch end
  vim.api.nvim_set_hl(0, "InfillGhostText", { link = "Comment", default = true })

  local group = vim.api.nvim_create_augroup("infill", { clear = true })
  vim.api.nvim_create_autocmd("FileType", {
    group = group,
    pattern = M.config.filetypes,
    callback = function(args)
      M.start(args.buf)
    end,
  })
  -- Buffers already open when setup() runs.
  for _, bufnr in ipairs(vim.api.nvim_list_bufs()) do
    if vim.api.nvim_buf_is_loaded(bufnr) and vim.tbl_contains(M.config.filetypes, vim.bo[bufnr].filetype) then
      M.start(bufnr)
    end
  end

  vim.api.nvim_create_user_command("InfillToggle", function() M.toggle() end, { desc = "infill: suggestions on/off" })
  vim.api.nvim_create_user_command("InfillRestart", M.restart, { desc = "infill: restart the server" })
  vim.api.nvim_create_user_command("InfillStats", function() vim.notify(M.stats_text()) end,
    { desc = "infill: show statistics" })
  vim.api.nvim_create_user_command("InfillSet", function(args)
    if #args.fargs ~= 2 then
      vim.notify("infill: usage :InfillSet NAME VALUE", vim.log.levels.ERROR)
      return
    end
    M.set_option(args.fargs[1], parse_value(args.fargs[2]))
  end, { nargs = "+", desc = "infill: set a server option, e.g. :InfillSet maxNewTokens 32" })
end

return M
