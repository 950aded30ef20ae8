// SCIM Group response converter: FusionAuth group -> SCIM Group JSON.
// The server has already set id, externalId, schemas, meta and members (the
// users that exist); the default converter only sets the display name.
function convert(scimGroup, group, members, context) {
  scimGroup.displayName = group.name;
}
