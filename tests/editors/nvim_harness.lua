-- Shared by the Neovim scenario scripts (loaded with dofile): the JSON report written to
-- INFILL_RESULT, a watchdog, and bounded waits inside the scenario's coroutine.
--   local h = dofile(vim.env.INFILL_REPO .. "/tests/editors/nvim_harness.lua")
--   h.start(90000); ...; h.run(scenario, on_error)
local M = { report = {} }

--- Write the report and quit (exit status 0, or 1 for a failure).
function M.finish(code)
  local f = assert(io.open(vim.env.INFILL_RESULT, "w"))
  f:write(vim.json.encode(M.report))
  f:close()
  vim.cmd(code == 0 and "qa!" or "cq!")
end

--- Quit with an error in the report if the scenario has not finished after `limit_ms`.
function M.start(limit_ms)
  vim.defer_fn(function()
    M.report.error = string.format("watchdog: the scenario did not finish in %d s", limit_ms / 1000)
    M.finish(1)
  end, limit_ms)
end

--- Let Neovim run for `ms` (inside the scenario's coroutine).
function M.sleep(ms)
  local co = coroutine.running()
  vim.defer_fn(function() coroutine.resume(co) end, ms)
  coroutine.yield()
end

--- Wait until `cond()` holds; an error naming `what` after `limit_ms` (default 20 s).
function M.wait_for(what, cond, limit_ms)
  local waited = 0
  while not cond() do
    if waited > (limit_ms or 20000) then
      error("timed out waiting for " .. what)
    end
    M.sleep(20)
    waited = waited + 20
  end
end

--- Type keys as the user would (through mappings).
function M.keys(k)
  vim.api.nvim_feedkeys(vim.api.nvim_replace_termcodes(k, true, false, true), "t", false)
end

--- Write `text` to INFILL_WORKDIR/`name` and edit it; returns the buffer.
function M.edit(name, text)
  local path = vim.env.INFILL_WORKDIR .. "/" .. name
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  vim.cmd("edit " .. vim.fn.fnameescape(path))
  return vim.api.nvim_get_current_buf()
end

--- Run `scenario` in a coroutine; an error goes into the report (after `on_error()`, if given).
function M.run(scenario, on_error)
  coroutine.wrap(function()
    local ok, err = pcall(scenario)
    if not ok then
      M.report.error = tostring(err)
      if on_error then
        pcall(on_error)
      end
    end
    M.finish(ok and 0 or 1)
  end)()
end

return M
