// SCIM Group request converter: SCIM Group JSON -> FusionAuth group and members.
// displayName becomes the group name; each member keeps its value (the user id)
// and its $ref. Application roles would go in options.roleIds (not set here).
function convert(group, members, options, scimGroup) {
  group.name = scimGroup.displayName;
  (scimGroup.members || []).forEach(function (member) {
    members.push({userId: member.value, data: {$ref: member.$ref}});
  });
}
