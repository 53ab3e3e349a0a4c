-- Argo CD health of a Tailor PersonalizationRule or ContentVariant: the argocd-cm keys
-- resource.customizations.health.tailor.dev_PersonalizationRule and ..._ContentVariant (docs/gitops.md).
-- It reads what the operator's compile loop writes (operator/tailor_operator/reconcile/publishing.py):
-- one Ready condition, True once this generation is served (reason Published), False with the
-- problem's reason (InvalidCel, InvalidContent, InvalidSpec, ...) or Held when another resource's
-- problem holds the namespace's ruleset back; observedGeneration says which generation it describes.
local hs = {}

local function condition(conditions, kind)
  for _, c in ipairs(conditions or {}) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local generation = obj.metadata.generation
local status = obj.status
if status == nil or status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Tailor operator to compile it"
  return hs
end

local ready = condition(status.conditions, "Ready")
local seen = status.observedGeneration
if ready ~= nil and ready.observedGeneration ~= nil and (seen == nil or ready.observedGeneration < seen) then
  seen = ready.observedGeneration
end
if ready == nil or (generation ~= nil and (seen == nil or seen < generation)) then
  -- Also while its stack is paused: the operator compiles nothing then.
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to compile generation " .. tostring(generation)
  return hs
end
if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message
  return hs
end
hs.status = "Degraded"
hs.message = ready.reason .. ": " .. ready.message
return hs
