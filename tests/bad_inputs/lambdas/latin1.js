// Zoë's converter
function convert(user, options, scimUser) {}
