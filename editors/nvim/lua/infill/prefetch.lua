-- infill/prefetch: tells the server where the cursor came to rest, so that it prefills that
-- place's prompt (and keeps a suggestion) in the background before the user types there.
--
-- Sent once the cursor has stayed put for `delay_ms` after a move that was not an edit (a
-- motion, a click, a search, a jump) or after entering a buffer, in Normal or Insert mode.
-- Normal mode counts too: that is where motions happen, and `i`/`a`/`o` usually follow.
-- Never sent for a move that typing (or any edit) made, with Visual/Select mode on, twice for
-- the same (buffer, changedtick, position), or when the text changed since the move.
--
-- How an edit is told from a move: Neovim fires CursorMoved(I) before TextChanged(I), so a
-- cursor event whose b:changedtick differs from the one at the previous cursor event came
-- with an edit. An edit that leaves the cursor where it was (`r`, `x` mid-line, <Del>) only
-- fires TextChanged: that one records the new tick, so the next motion counts as a move.
-- Leaving Insert mode puts the cursor one column back: InsertLeave fires after that and
-- records the place, so the CursorMoved that follows is not a new place (the user just typed
-- there; the server is warm).
local compat = require("infill.compat")

local M = {}

M.METHOD = "infill/prefetch"
M.config = {
  delay_ms = 200,
  client_name = "infill-ls",
  -- Set by infill.setup(): false while suggestions or prefetch are off.
  active = function() return true end,
}

local places = {} ---@type table<integer, { row: integer, col: integer, tick: integer }> last cursor event per buffer
local timer
local last_sent ---@type string?

local function cursor_key(bufnr, tick, row, col)
  return string.format("%d:%d:%d:%d", bufnr, tick, row, col)
end

local function can_type_here()
  local mode = vim.api.nvim_get_mode().mode
  return mode == "n" or mode == "i"
end

--- The current cursor in `bufnr` as { row, col, tick } (0-based row, byte column).
local function here(bufnr)
  local cursor = vim.api.nvim_win_get_cursor(0)
  return { row = cursor[1] - 1, col = cursor[2], tick = vim.api.nvim_buf_get_changedtick(bufnr) }
end

function M.cancel()
  if timer then
    timer:stop()
  end
end

--- Send now, if the cursor, the text and the mode are still as when it was scheduled.
local function send(bufnr, place)
  if not (vim.api.nvim_buf_is_valid(bufnr) and vim.api.nvim_get_current_buf() == bufnr) then
    return
  end
  local now = here(bufnr)
  if now.row ~= place.row or now.col ~= place.col or now.tick ~= place.tick then
    return
  end
  local key = cursor_key(bufnr, now.tick, now.row, now.col)
  if key == last_sent or not M.config.active() or not can_type_here() then
    return
  end
  local client = compat.get_clients({ bufnr = bufnr, name = M.config.client_name })[1]
  if not (client and client.initialized) then
    return
  end
  local params = vim.lsp.util.make_position_params(0, client.offset_encoding or "utf-16")
  if compat.notify(client, M.METHOD, params) then
    last_sent = key
  end
end

local function schedule(bufnr, place)
  if not (M.config.active() and can_type_here()) then
    M.cancel()
    return
  end
  timer = timer or compat.uv.new_timer()
  timer:stop()
  timer:start(M.config.delay_ms, 0, vim.schedule_wrap(function() send(bufnr, place) end))
end

--- CursorMoved/CursorMovedI: a move that came without an edit is a new place.
function M.on_cursor_moved(bufnr)
  local before, now = places[bufnr], here(bufnr)
  places[bufnr] = now
  if before and before.tick ~= now.tick then
    M.cancel() -- typing (or another edit) moved the cursor
  elseif not before or before.row ~= now.row or before.col ~= now.col then
    schedule(bufnr, now)
  end
end

--- TextChanged/TextChangedI: whatever was scheduled is stale. An edit that did not move the
--- cursor fires no CursorMoved, so it records the new tick itself.
function M.on_text_changed(bufnr)
  M.cancel()
  local before, now = places[bufnr], here(bufnr)
  if before and before.row == now.row and before.col == now.col then
    places[bufnr] = now
  end
end

--- InsertLeave: the cursor went one column back; not a new place.
function M.on_insert_leave(bufnr)
  places[bufnr] = here(bufnr)
  M.cancel()
end

--- BufEnter (and attaching to the current buffer): switching to a buffer is a new place. The
--- cursor is put back where it was in that buffer only after BufEnter (with no CursorMoved).
function M.on_enter(bufnr)
  vim.schedule(function()
    if vim.api.nvim_buf_is_valid(bufnr) and vim.api.nvim_get_current_buf() == bufnr then
      local now = here(bufnr)
      places[bufnr] = now
      schedule(bufnr, now)
    end
  end)
end

--- Buffer-local autocommands; called when the server attaches to `bufnr`.
function M.attach(bufnr)
  local group = vim.api.nvim_create_augroup("infill_prefetch_" .. bufnr, { clear = true })
  local function on(events, fn)
    vim.api.nvim_create_autocmd(events, { group = group, buffer = bufnr, callback = function() fn(bufnr) end })
  end
  on({ "CursorMoved", "CursorMovedI" }, M.on_cursor_moved)
  on({ "TextChanged", "TextChangedI", "TextChangedP" }, M.on_text_changed)
  on({ "InsertLeave" }, M.on_insert_leave)
  on({ "BufEnter" }, M.on_enter)
  on({ "BufLeave" }, M.cancel)
  on({ "BufWipeout" }, function(b) places[b] = nil end)
  if vim.api.nvim_get_current_buf() == bufnr then
    M.on_enter(bufnr) -- the buffer was entered before the server attached
  end
end

function M.detach(bufnr)
  places[bufnr] = nil
  pcall(vim.api.nvim_del_augroup_by_name, "infill_prefetch_" .. bufnr)
end

return M
