// SCIM User response converter, corrected: FusionAuth user -> SCIM User JSON.
// As the default (data/lambdas/scim-user-response.js), and also returns what
// the corrected request lambda keeps in user.data: displayName, title, locale,
// preferredLanguage, and every email and phone number as sent. The manager it
// keeps is in the enterprise extension, which comes back whole.
function convert(scimUser, user) {
  var data = user.data || {};
  scimUser.active = user.active;
  scimUser.userName = user.username;
  scimUser.name = {
    givenName: user.firstName,
    familyName: user.lastName,
    middleName: user.middleName,
    formatted: user.fullName,
    honorificPrefix: data.honorificPrefix,
    honorificSuffix: data.honorificSuffix
  };
  scimUser.displayName = data.displayName;
  scimUser.title = data.title;
  scimUser.locale = data.locale;
  scimUser.preferredLanguage = data.preferredLanguage;

  if (user.email) {
    scimUser.emails = items(data.emails, user.email, "work");
  }
  if (user.mobilePhone) {
    scimUser.phoneNumbers = items(data.phoneNumbers, user.mobilePhone, "mobile");
  }

  var extensions = data.extensions || {};
  Object.keys(extensions).forEach(function (urn) {
    if (scimUser.schemas.indexOf(urn) === -1) {
      scimUser.schemas.push(urn);
    }
    scimUser[urn] = extensions[urn];
  });
}

// The items kept in user.data when they hold FusionAuth's own value (`kept`),
// that item typed `type` if it was sent without a type (as the default renders
// it, so that a later PATCH on emails[type eq "work"].value finds it); when
// the value was changed in FusionAuth, it comes first as the primary item, of
// `type`, and the kept items follow as not primary.
function items(stored, kept, type) {
  var list = (stored || []).filter(function (item) {
    return item && item.value;
  });
  var index = -1;
  list.forEach(function (item, i) {
    if (index === -1 &&
        String(item.value).toLowerCase() === String(kept).toLowerCase()) {
      index = i;
    }
  });
  if (index !== -1) {
    if (!list[index].type) {
      list[index] = JSON.parse(JSON.stringify(list[index]));
      list[index].type = type;
    }
    return list;
  }
  return [{primary: true, value: kept, type: type}].concat(
    list.map(function (item) {
      var other = JSON.parse(JSON.stringify(item));
      other.primary = false;
      return other;
    })
  );
}
