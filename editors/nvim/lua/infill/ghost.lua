-- Ghost text for Neovim 0.10/0.11, which have no built-in inline completion:
-- requests textDocument/inlineCompletion (debounced) while typing in insert mode
-- and draws the suggestion with extmarks: the rest of the current line as inline
-- `virt_text` at the cursor, the following lines as `virt_lines`.
--
-- Per buffer state:
--   items   suggestions, each { text = what accepting inserts at the cursor,
--                                replace = text after the cursor it replaces, item = LSP item }
--   index   the one shown
--   row/col where it was computed (0-based row, byte column of the cursor)
--   tick    b:changedtick when it was shown
local compat = require("infill.compat")

local M = {}

local METHOD = "textDocument/inlineCompletion"
local ns = vim.api.nvim_create_namespace("infill_ghost")
local state = {} ---@type table<integer, table>

M.namespace = ns
M.config = { debounce_ms = 150, hl_group = "InfillGhostText", client_name = "infill-ls" }
M.stats = { requests = 0, shown = 0, accepted = 0, errors = 0, last_latency_ms = nil, last_error = nil }

local function buf_state(bufnr)
  state[bufnr] = state[bufnr] or { items = {}, index = 1 }
  return state[bufnr]
end

--- The buffer's state and the suggestion it shows (nil when none is shown).
local function shown(bufnr)
  local s = buf_state(bufnr)
  return s, s.items[s.index]
end

local function client_for(bufnr)
  for _, client in ipairs(compat.get_clients({ bufnr = bufnr, name = M.config.client_name })) do
    return client
  end
end

local function in_insert_mode()
  return vim.api.nvim_get_mode().mode:sub(1, 1) == "i"
end

local function current_line(bufnr, row)
  return vim.api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or ""
end

local function cancel_pending(bufnr)
  local s = buf_state(bufnr)
  if s.timer then
    s.timer:stop()
  end
  if s.request_id and s.client_id then
    local client = vim.lsp.get_client_by_id(s.client_id)
    if client then
      compat.cancel(client, s.request_id)
    end
  end
  s.request_id, s.pending = nil, nil
end

local function undraw(bufnr)
  if vim.api.nvim_buf_is_valid(bufnr) then
    vim.api.nvim_buf_clear_namespace(bufnr, ns, 0, -1)
  end
end

--- Hide the suggestion and forget it; cancels a request in flight.
function M.clear(bufnr)
  bufnr = bufnr or vim.api.nvim_get_current_buf()
  cancel_pending(bufnr)
  local s = buf_state(bufnr)
  s.items, s.index = {}, 1
  undraw(bufnr)
end

function M.current(bufnr)
  local s = state[bufnr or vim.api.nvim_get_current_buf()]
  return s and s.items[s.index] or nil
end

--- The known suggestions' texts and the index of the one shown.
function M.candidates(bufnr)
  local s = state[bufnr or vim.api.nvim_get_current_buf()]
  if not s then
    return {}, 0
  end
  return vim.tbl_map(function(sug) return sug.text end, s.items), s.index
end

function M.is_visible(bufnr)
  return M.current(bufnr) ~= nil
end

local function draw(bufnr)
  undraw(bufnr)
  local s, sug = shown(bufnr)
  if not sug then
    return
  end
  local lines = vim.split(sug.text, "\n", { plain = true })
  local first = lines[1]
  -- A one-line suggestion that rewrites the rest of the line usually ends with what is
  -- already there (e.g. the closing paren): show only the new part before it.
  if #lines == 1 and sug.replace ~= "" and first:sub(-#sug.replace) == sug.replace then
    first = first:sub(1, #first - #sug.replace)
  end
  local hl = M.config.hl_group
  local opts = { hl_mode = "combine" }
  if first ~= "" then
    opts.virt_text = { { first, hl } }
    opts.virt_text_pos = "inline"
  end
  if #lines > 1 then
    opts.virt_lines = {}
    for i = 2, #lines do
      table.insert(opts.virt_lines, { { lines[i] == "" and " " or lines[i], hl } })
    end
  end
  vim.api.nvim_buf_set_extmark(bufnr, ns, s.row, s.col, opts)
end

--- Turn an LSP item into what accepting it inserts at the cursor, or nil if it does not fit
--- (multi-line range, range not around the cursor, or text that contradicts what is typed).
local function to_suggestion(item, line, row, col, encoding)
  local text = item.insertText
  if type(text) == "table" then
    text = text.value
  end
  if type(text) ~= "string" or text == "" then
    return nil
  end
  local start_col, end_col = col, col
  if item.range then
    if item.range.start.line ~= row or item.range["end"].line ~= row then
      return nil
    end
    start_col = compat.byte_col(line, item.range.start.character, encoding)
    end_col = compat.byte_col(line, item.range["end"].character, encoding)
  end
  if start_col > col or end_col < col then
    return nil
  end
  local typed = line:sub(start_col + 1, col)
  if text:sub(1, #typed) ~= typed then
    return nil
  end
  text = text:sub(#typed + 1)
  if text == "" then
    return nil
  end
  return { text = text, replace = line:sub(col + 1, end_col), item = item }
end

local function show(bufnr, items, row, col)
  local s = buf_state(bufnr)
  s.items, s.index = items, 1
  s.row, s.col = row, col
  s.tick = vim.api.nvim_buf_get_changedtick(bufnr)
  if #items > 0 then
    M.stats.shown = M.stats.shown + 1
  end
  draw(bufnr)
end

--- Ask the server for suggestions at the cursor now. trigger_kind: 1 Invoked, 2 Automatic.
function M.request(bufnr, trigger_kind, on_done)
  bufnr = bufnr or vim.api.nvim_get_current_buf()
  local client = client_for(bufnr)
  if not client or vim.api.nvim_get_current_buf() ~= bufnr then
    return
  end
  cancel_pending(bufnr)
  local s = buf_state(bufnr)
  local encoding = client.offset_encoding or "utf-16"
  local params = vim.lsp.util.make_position_params(0, encoding)
  params.context = { triggerKind = trigger_kind or 2 }
  local cursor = vim.api.nvim_win_get_cursor(0)
  local row, col = cursor[1] - 1, cursor[2]
  local tick = vim.api.nvim_buf_get_changedtick(bufnr)
  local started = compat.uv.hrtime()
  s.seq = (s.seq or 0) + 1
  local seq = s.seq
  s.pending = seq
  local ok, id = compat.request(client, METHOD, params, function(err, result)
    if s.pending ~= seq then
      return -- cancelled or superseded by a newer request
    end
    s.request_id, s.pending = nil, nil
    M.stats.requests = M.stats.requests + 1
    M.stats.last_latency_ms = (compat.uv.hrtime() - started) / 1e6
    if err then
      M.stats.errors = M.stats.errors + 1
      if M.stats.last_error ~= err.message then
        vim.notify("infill: " .. tostring(err.message), vim.log.levels.WARN)
      end
      M.stats.last_error = err.message
      return
    end
    M.stats.last_error = nil
    local now = vim.api.nvim_win_get_cursor(0)
    if vim.api.nvim_get_current_buf() ~= bufnr or vim.api.nvim_buf_get_changedtick(bufnr) ~= tick
      or now[1] - 1 ~= row or now[2] ~= col or not in_insert_mode() then
      return -- stale: the user moved on
    end
    local line = current_line(bufnr, row)
    local items = {}
    for _, item in ipairs((result and (result.items or result)) or {}) do
      local sug = to_suggestion(item, line, row, col, encoding)
      if sug then
        table.insert(items, sug)
      end
    end
    show(bufnr, items, row, col)
    if on_done then
      on_done(items)
    end
  end, bufnr)
  if ok and s.pending == seq then
    s.request_id, s.client_id = id, client.id
  end
end

--- Debounced automatic request (called on typing and entering insert mode). It is made only if
--- the cursor and the text are still as they were: moving away without typing asks nothing.
function M.schedule(bufnr)
  local s = buf_state(bufnr)
  s.timer = s.timer or compat.uv.new_timer()
  s.timer:stop()
  local cursor = vim.api.nvim_win_get_cursor(0)
  local tick = vim.api.nvim_buf_get_changedtick(bufnr)
  s.timer:start(M.config.debounce_ms, 0, vim.schedule_wrap(function()
    if not (vim.api.nvim_buf_is_valid(bufnr) and in_insert_mode() and vim.api.nvim_get_current_buf() == bufnr) then
      return
    end
    local now = vim.api.nvim_win_get_cursor(0)
    if now[1] == cursor[1] and now[2] == cursor[2] and vim.api.nvim_buf_get_changedtick(bufnr) == tick then
      M.request(bufnr, 2)
    end
  end))
end

--- If the text typed since the suggestion was shown is its beginning, keep the rest of it
--- (typing through a suggestion); returns true when it did.
local function typed_through(bufnr)
  local s, sug = shown(bufnr)
  if not sug then
    return false
  end
  local cursor = vim.api.nvim_win_get_cursor(0)
  local row, col = cursor[1] - 1, cursor[2]
  if row ~= s.row or col <= s.col then
    return false
  end
  local typed = current_line(bufnr, row):sub(s.col + 1, col)
  if sug.text:sub(1, #typed) ~= typed or #typed == #sug.text then
    return false
  end
  local rest = { text = sug.text:sub(#typed + 1), replace = sug.replace, item = sug.item }
  show(bufnr, { rest }, row, col)
  return true
end

function M.on_text_changed(bufnr)
  local s = buf_state(bufnr)
  if s.tick == vim.api.nvim_buf_get_changedtick(bufnr) then
    return -- our own edit (accept word), state already updated
  end
  if typed_through(bufnr) then
    return
  end
  M.clear(bufnr)
  M.schedule(bufnr)
end

function M.on_cursor_moved(bufnr)
  local s = buf_state(bufnr)
  if not s.items[s.index] or s.tick ~= vim.api.nvim_buf_get_changedtick(bufnr) then
    return -- nothing shown, or the text changed: on_text_changed decides
  end
  local cursor = vim.api.nvim_win_get_cursor(0)
  if cursor[1] - 1 ~= s.row or cursor[2] ~= s.col then
    M.clear(bufnr)
  end
end

local function insert_at_cursor(bufnr, s, text, replace)
  local lines = vim.split(text, "\n", { plain = true })
  vim.api.nvim_buf_set_text(bufnr, s.row, s.col, s.row, s.col + #(replace or ""), lines)
  local end_row = s.row + #lines - 1
  local end_col = (#lines == 1 and s.col or 0) + #lines[#lines]
  vim.api.nvim_win_set_cursor(0, { end_row + 1, end_col })
  return end_row, end_col
end

local function run_item_command(bufnr, item)
  if not item.command then
    return
  end
  local client = client_for(bufnr)
  if client then
    compat.request(client, "workspace/executeCommand", {
      command = item.command.command, arguments = item.command.arguments,
    }, function() end, bufnr)
  end
end

--- Insert the whole suggestion; returns false if none is shown.
function M.accept(bufnr)
  bufnr = bufnr or vim.api.nvim_get_current_buf()
  local s, sug = shown(bufnr)
  if not sug then
    return false
  end
  M.clear(bufnr)
  insert_at_cursor(bufnr, s, sug.text, sug.replace)
  -- Our own edit: no new request until the user types again.
  s.tick = vim.api.nvim_buf_get_changedtick(bufnr)
  M.stats.accepted = M.stats.accepted + 1
  run_item_command(bufnr, sug.item)
  return true
end

--- The next word of `text` (with the spaces or line break before it).
function M.next_word(text)
  return text:match("^%s*[%w_]+") or text:match("^%s*[^%w_%s]+") or text:match("^%s+") or text
end

--- Insert the suggestion's next word and keep showing the rest; returns false if none is shown.
function M.accept_word(bufnr)
  bufnr = bufnr or vim.api.nvim_get_current_buf()
  local s, sug = shown(bufnr)
  if not sug then
    return false
  end
  local word = M.next_word(sug.text)
  local rest = sug.text:sub(#word + 1)
  undraw(bufnr)
  local row, col = insert_at_cursor(bufnr, s, word, nil)
  if rest == "" then
    M.clear(bufnr)
    s.tick = vim.api.nvim_buf_get_changedtick(bufnr)
    M.stats.accepted = M.stats.accepted + 1
    run_item_command(bufnr, sug.item)
  else
    show(bufnr, { { text = rest, replace = sug.replace, item = sug.item } }, row, col)
  end
  return true
end

--- Show the next (count 1) or previous (count -1) suggestion; asks for more when only one is known.
function M.cycle(bufnr, count)
  bufnr = bufnr or vim.api.nvim_get_current_buf()
  local s = buf_state(bufnr)
  if #s.items > 1 then
    s.index = (s.index - 1 + count) % #s.items + 1
    draw(bufnr)
    return
  end
  local shown_text = s.items[s.index] and s.items[s.index].text
  M.request(bufnr, 1, function(items)
    if shown_text and #items > 1 and items[1].text == shown_text then
      s.index = (count > 0) and 2 or #items
      draw(bufnr)
    end
  end)
end

--- Attach the insert-mode autocommands to a buffer.
function M.attach(bufnr)
  local group = vim.api.nvim_create_augroup("infill_ghost_" .. bufnr, { clear = true })
  local function on(events, fn)
    vim.api.nvim_create_autocmd(events, { group = group, buffer = bufnr, callback = function() fn(bufnr) end })
  end
  on({ "InsertEnter" }, M.schedule)
  on({ "TextChangedI", "TextChangedP" }, M.on_text_changed)
  on({ "CursorMovedI" }, M.on_cursor_moved)
  on({ "InsertLeave", "BufLeave" }, M.clear)
  on({ "BufWipeout" }, function(b)
    M.clear(b)
    local s = state[b]
    if s and s.timer then
      s.timer:close()
    end
    state[b] = nil
  end)
end

function M.detach(bufnr)
  M.clear(bufnr)
  pcall(vim.api.nvim_del_augroup_by_name, "infill_ghost_" .. bufnr)
end

return M
